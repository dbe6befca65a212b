"""Examples: where they come from, their stable ids and labels, and per-class sampling.

Every example has a ``source`` string from which it can be loaded again:

- ``sklearn-digits:<i>``: image i of scikit-learn's bundled digits (8 x 8, grey levels 0-16);
- a file path, relative to the data root recorded in the store's metadata (or absolute).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConceptvecError
from .digits import DIGITS_PREFIX, cached_digits_images

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def load_example_image(source: str, root: str | os.PathLike[str] | None = None, background: str | None = None) -> Image.Image:
    """The picture of one example from its ``source`` string (RGB, or L for digits).

    ``background``: the colour transparent images were composited on at extraction (the store's
    ``data.background``); None, for stores made before it was recorded, drops the alpha channel as they did.
    """
    if source.startswith(DIGITS_PREFIX):
        images, _ = cached_digits_images()
        i = int(source[len(DIGITS_PREFIX):])
        return Image.fromarray(np.uint8(np.round(images[i] * 255.0 / 16.0)), mode="L")
    path = Path(source)
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    with Image.open(path) as im:
        return flatten(im, background) if background is not None else im.convert("RGB")


def check_background(name: str, value: Any) -> str:
    """The check of ``background``: a colour PIL knows (``white``, ``black``, ``#rrggbb``, ``rgb(r, g, b)``)."""
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(value)
    except (ValueError, AttributeError, TypeError):
        raise ConceptvecError(f"{name} must be a colour name (white, black, grey, ...) or #rrggbb, got {value!r}.") from None
    if len(rgb) == 4 and rgb[3] != 255:  # a see-through background would leave the image transparent, then flattened
        raise ConceptvecError(f"{name} must be an opaque colour (#rrggbb, or alpha ff), got {value!r}.")
    return value


def has_transparency(im: Image.Image) -> bool:
    """Whether the image has an alpha channel or a transparent colour (RGBA, LA, PA, or a ``transparency`` entry)."""
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def flatten(im: Image.Image, background: str = "white") -> Image.Image:
    """The image as RGB, an image with transparency composited on ``background`` (as a viewer shows it).

    Converting to RGB drops the alpha channel: an icon drawn only in alpha (black RGB everywhere)
    becomes a black square, and every such icon the same one.
    """
    if not has_transparency(im):
        return im.convert("RGB")
    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, background)
    return Image.alpha_composite(base, rgba).convert("RGB")


def count_transparent(files: "ImageFiles") -> int:
    """How many of ``files`` have transparency, from their headers (no pixels decoded; JPEGs have none)."""
    n = 0
    for p in files.paths:
        if p.lower().endswith((".jpg", ".jpeg")):
            continue
        try:
            with Image.open(files.root / p) as im:
                n += has_transparency(im)
        except (OSError, UnidentifiedImageError, ValueError):
            continue  # unreadable: extraction skips and lists it
    return n


@dataclass
class ImageFiles:
    """A list of image files with stable ids and labels.

    ``ids`` are paths relative to ``root`` (stable across machines); ``labels`` index ``classes``
    (-1 when the layout has no classes).
    """

    root: Path
    paths: list[str]
    labels: list[int]
    classes: list[str]
    layout: str
    per_class: int | None = None
    seed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    class_index: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self) -> dict[str, Any]:
        """What the data was, for the store's metadata."""
        return {
            "kind": "image-files",
            "root": str(self.root.resolve()),
            "layout": self.layout,
            "n_examples": len(self.paths),
            "n_classes": len(self.classes),
            "per_class": self.per_class,
            "seed": self.seed,
            "class_index": self.class_index,
        }


def image_files(data: str | os.PathLike[str], per_class: int | None = None, seed: int = 0,
                class_index: str | os.PathLike[str] | None = None) -> ImageFiles:
    """Find images under ``data``: a class-per-folder tree (ImageNet layout), a flat folder, or a text file of paths.

    ``per_class`` samples that many images of each class with ``seed`` (the paper: 130 of each ImageNet class).
    ``class_index`` is an ImageNet class-index JSON (``{"0": ["n01440764", "tench"], ...}``): folders named
    by WordNet id then get the model's class number as label and the readable name as label name.
    """
    data = Path(data)
    if not data.exists():
        raise ConceptvecError(f"data path {data} does not exist; give an image folder (one sub-folder per class, or flat) or a text file listing image paths.")
    if data.is_file():
        root = data.parent
        try:
            text = data.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConceptvecError(f"{data} is not a text file (not UTF-8): give an image folder (one sub-folder per class, "
                                  f"or flat) or a .txt file listing one image path per line.") from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if not lines:
            raise ConceptvecError(f"{data} lists no image paths (one path per line expected).")
        files = ImageFiles(root, lines, [-1] * len(lines), [], "list")
    else:
        subdirs = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
        if subdirs:
            classes: list[str] = []
            paths: list[str] = []
            labels: list[int] = []
            for d in subdirs:
                found = _images_in(d, data)
                if found:
                    labels += [len(classes)] * len(found)
                    paths += found
                    classes.append(d.name)
            files = ImageFiles(data, paths, labels, classes, "class-folders")
            if class_index is not None:
                files = _apply_class_index(files, class_index)
        else:
            paths = _images_in(data, data)
            files = ImageFiles(data, paths, [-1] * len(paths), [], "flat")
        if not files.paths:
            raise ConceptvecError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {data}.")
    if class_index is not None and files.layout != "class-folders":
        raise ConceptvecError(f"a class index labels class folders; {data} is a {files.layout} layout, which has no classes.")
    if per_class is not None:
        files = _sample_per_class(files, per_class, seed)
    return files


def read_class_index(path: str | os.PathLike[str]) -> dict[str, tuple[int, str]]:
    """An ImageNet class-index JSON (``{"0": ["n01440764", "tench"], ...}``) as folder name to (class number, name)."""
    import json

    try:
        raw = json.loads(Path(path).read_text())
        index = {str(wnid): (int(k), str(name)) for k, (wnid, name) in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConceptvecError(
            f"could not read {path} as an ImageNet class-index JSON ({exc}); expected {{\"0\": [\"n01440764\", \"tench\"], ...}} "
            f"(Keras' imagenet_class_index.json)."
        ) from None
    return index


def _apply_class_index(files: ImageFiles, class_index: str | os.PathLike[str]) -> ImageFiles:
    index = read_class_index(class_index)
    unknown = [c for c in files.classes if c not in index]
    if unknown:
        raise ConceptvecError(
            f"{len(unknown)} class folders are not in {class_index} (e.g. {unknown[:3]}); name the folders by the "
            f"index's WordNet ids, or leave out the class index to label classes by folder name."
        )
    names = [""] * (max(i for i, _ in index.values()) + 1)
    for i, name in index.values():
        names[i] = name
    labels = [index[files.classes[c]][0] for c in files.labels]
    return ImageFiles(files.root, files.paths, labels, names, files.layout, class_index=str(Path(class_index).resolve()))


def _images_in(folder: Path, root: Path) -> list[str]:
    # Walked without following links: a link that leads out of the data folder would read files the user did not give.
    inside = root.resolve()
    found, outside = [], []
    top = [folder] if folder.is_symlink() and inside not in folder.resolve().parents else []
    for base, dirs, files in os.walk(folder, followlinks=False) if not top else ():
        for name in dirs + files:
            p = Path(base) / name
            if p.is_symlink() and inside not in p.resolve().parents:
                outside.append(p)
            elif name in files and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                found.append(str(p.relative_to(root)))
    outside = top + outside
    if outside:
        shown = ", ".join(str(p.relative_to(root)) for p in outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
        raise ConceptvecError(f"{root} holds links that lead out of it ({shown}); conceptvec reads only the files inside the "
                              f"data folder. Copy those images in, or remove the links.")
    return sorted(found)


def sample_per_class(labels: Any, per_class: int, seed: int) -> list[int]:
    """Indices of ``per_class`` examples of each label (all of a smaller class), drawn with ``seed``, ascending."""
    if per_class < 1:
        raise ConceptvecError(f"per_class must be >= 1, got {per_class}.")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep: list[int] = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        chosen = idx if len(idx) <= per_class else np.sort(rng.choice(idx, size=per_class, replace=False))
        keep += chosen.tolist()
    return sorted(keep)


def _sample_per_class(files: ImageFiles, per_class: int, seed: int) -> ImageFiles:
    keep = sample_per_class(files.labels, per_class, seed)
    return ImageFiles(
        files.root, [files.paths[i] for i in keep], [files.labels[i] for i in keep], files.classes,
        files.layout, per_class, seed, class_index=files.class_index,
    )


def open_image(path: Path, background: str = "white") -> Image.Image | None:
    """The image as RGB (transparency composited on ``background``), or None when the file is unreadable or not an image."""
    try:
        with Image.open(path) as im:
            return flatten(im, background)
    except (OSError, UnidentifiedImageError, ValueError):
        return None

