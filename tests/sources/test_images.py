import numpy as np
import pytest
from PIL import Image

from conceptvec import ConceptvecError
from conceptvec.sources.images import image_files, load_example_image


def _tree(root, classes=("cat", "dog"), per=5):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per):
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / c / f"{i}.png")


def test_class_folders_and_sampling(tmp_path):
    _tree(tmp_path)
    files = image_files(tmp_path)
    assert files.layout == "class-folders" and files.classes == ["cat", "dog"] and len(files) == 10
    assert files.paths[0] == "cat/0.png" and files.labels == [0] * 5 + [1] * 5
    a, b, c = image_files(tmp_path, per_class=3, seed=1), image_files(tmp_path, per_class=3, seed=1), image_files(tmp_path, per_class=3, seed=2)
    assert a.paths == b.paths and len(a) == 6 and a.labels.count(0) == 3
    assert a.paths != c.paths or a.labels != c.labels  # another seed, another sample (3 of 5 in two classes)
    assert a.describe()["per_class"] == 3


def test_flat_and_list(tmp_path):
    for i in range(3):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.jpg")
    flat = image_files(tmp_path)
    assert flat.layout == "flat" and flat.labels == [-1, -1, -1]
    listing = tmp_path / "list.txt"
    listing.write_text("0.jpg\n# comment\n2.jpg\n")
    assert image_files(listing).paths == ["0.jpg", "2.jpg"]


def test_errors(tmp_path):
    with pytest.raises(ConceptvecError, match="does not exist"):
        image_files(tmp_path / "nope")
    with pytest.raises(ConceptvecError, match="no images"):
        image_files(tmp_path)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ConceptvecError, match="lists no image paths"):
        image_files(tmp_path / "empty.txt")


def test_load_example_image(tmp_path):
    im = load_example_image("sklearn-digits:0")
    assert im.mode == "L" and im.size == (8, 8) and np.asarray(im).max() > 200
    Image.new("RGB", (5, 5), (10, 20, 30)).save(tmp_path / "a.png")
    assert load_example_image("a.png", root=tmp_path).getpixel((0, 0)) == (10, 20, 30)


def test_imagenet_class_index(tmp_path):
    import json

    _tree(tmp_path / "train", classes=("n01443537", "n01440764"), per=2)
    index = {"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"], "2": ["n01484850", "great white shark"]}
    (tmp_path / "index.json").write_text(json.dumps(index))
    files = image_files(tmp_path / "train", class_index=tmp_path / "index.json")
    # labels are the model's class numbers, not the folders' order
    assert files.paths[0] == "n01440764/0.png" and files.labels == [0, 0, 1, 1]
    assert files.classes == ["tench", "goldfish", "great white shark"]
    assert files.describe()["class_index"].endswith("index.json")
    assert image_files(tmp_path / "train", per_class=1, class_index=tmp_path / "index.json").labels == [0, 1]
    (tmp_path / "train" / "n99999999").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "n99999999" / "x.png")
    with pytest.raises(ConceptvecError, match=r"1 class folders are not in .*n99999999"):
        image_files(tmp_path / "train", class_index=tmp_path / "index.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConceptvecError, match=r"ImageNet class-index JSON"):
        image_files(tmp_path / "train", class_index=tmp_path / "bad.json")


def test_sample_per_class_is_seeded():
    from conceptvec.sources.images import sample_per_class

    labels = [0] * 10 + [1] * 3 + [2] * 7
    a = sample_per_class(labels, 4, seed=0)
    assert a == sample_per_class(labels, 4, seed=0) and a == sorted(a)
    assert [labels[i] for i in a].count(1) == 3 and len(a) == 11
    assert a != sample_per_class(labels, 4, seed=1)
    with pytest.raises(ConceptvecError, match="per_class must be >= 1"):
        sample_per_class(labels, 0, seed=0)


def _alpha_only_icon(path, box):
    """An icon drawn only in alpha: black RGB everywhere, opaque inside ``box`` (as many desktop icons are)."""
    a = np.zeros((16, 16), np.uint8)
    a[box] = 255
    rgba = np.dstack([np.zeros((16, 16, 3), np.uint8), a])
    Image.fromarray(rgba, mode="RGBA").save(path)


def test_transparent_images_are_composited_on_the_background(tmp_path):
    from conceptvec.sources.images import count_transparent, flatten, open_image

    _alpha_only_icon(tmp_path / "left.png", np.s_[:, :8])
    _alpha_only_icon(tmp_path / "top.png", np.s_[:8, :])
    left, top = open_image(tmp_path / "left.png"), open_image(tmp_path / "top.png")
    # On white, the shapes are kept: black where opaque, white where transparent.
    assert np.asarray(left)[0, 0].tolist() == [0, 0, 0] and np.asarray(left)[15, 15].tolist() == [255, 255, 255]
    assert not np.array_equal(np.asarray(left), np.asarray(top))
    with Image.open(tmp_path / "left.png") as im:  # dropping alpha (what convert("RGB") does) makes both the same square
        assert np.asarray(im.convert("RGB")).max() == 0
    assert np.asarray(open_image(tmp_path / "left.png", "#ff0000"))[15, 15].tolist() == [255, 0, 0]
    # half-transparent grey-with-alpha (LA) on white: the mean of the two
    Image.fromarray(np.dstack([np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8)]), mode="LA").save(tmp_path / "la.png")
    assert np.asarray(open_image(tmp_path / "la.png"))[0, 0].tolist() == [127, 127, 127]
    # a palette image whose colour 0 is transparent
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.save(tmp_path / "p.png", transparency=0)
    flat = np.asarray(open_image(tmp_path / "p.png", "blue"))
    assert flat[0, 0].tolist() == [255, 0, 0] and flat[3, 3].tolist() == [0, 0, 255]
    Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "opaque.png")
    assert np.asarray(flatten(Image.open(tmp_path / "opaque.png"), "white"))[0, 0].tolist() == [9, 9, 9]
    files = image_files(tmp_path)
    assert len(files) == 5 and count_transparent(files) == 4
    assert np.asarray(load_example_image("left.png", tmp_path, "white"))[15, 15].tolist() == [255, 255, 255]
    assert np.asarray(load_example_image("left.png", tmp_path))[15, 15].tolist() == [0, 0, 0]  # stores from before: as extracted


def test_a_bad_background_colour_is_refused_with_the_fix():
    import conceptvec as cv

    with pytest.raises(ConceptvecError, match=r"background must be a colour name .* or #rrggbb, got 'whyte'"):
        cv.ExtractConfig(background="whyte")
    assert cv.ExtractConfig(background="#102030").background == "#102030"
