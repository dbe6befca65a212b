import numpy as np
import pytest
from PIL import Image

from conceptvec import ConceptvecError
from conceptvec.data import image_files, load_example_image


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
