"""Reading image files into uint8 arrays, one loader per on-disk format; which files make which data set is
decided by the registry in ``images.py``.

Loaders return plain arrays (``Arrays`` per split), not ``ImageSplit``: ``images.py`` imports this module, so
building its types here would make the two import each other. ``images.py`` checks the arrays when it wraps them.
Every loader takes ``(name, data_dir, **options)``; ``name`` and ``hint`` only go into error messages.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import tarfile
import warnings
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..io import atomic_write
from ..validation import shown
from .files import (IMAGE_SUFFIXES, DataFileError, data_root, first_existing, folder_images, folder_root,
                    listed_images, read_text, require_file)

__all__ = ["Arrays", "Loaded", "read_idx", "default_cache_dir", "load_idx", "load_digits", "load_jpeg_tarballs",
           "load_svhn", "load_folders", "load_tiny_imagenet", "load_mnist_m"]

Arrays = tuple[np.ndarray, np.ndarray]  # one split: images (N, C, H, W) uint8, labels (N,) int64
Loaded = tuple[Arrays, Arrays, list[str]]  # train, test, class names
_Entry = tuple[str, str, Any]  # (class name, where - for errors and ordering, path or file object)


# ---------------------------------------------------------------------------------------------------
# Decoding images (shared by every folder, list and tarball format)


MAX_IMAGE_PIXELS = 1 << 26  # per image (8192 x 8192, 200 MB as RGB): far above PACS's 227 x 227 or ImageNet's photos


def _decode(source: Path | io.BytesIO, where: str, size: int | None, like: tuple[str, tuple[int, ...]] | None, *,
            dataset: str, hint: str) -> np.ndarray:
    """One image as ``(3, H, W)`` uint8 (grey and palette images become RGB); ``where`` names it in errors. Its size,
    read from its header, is checked before it is decoded: at most MAX_IMAGE_PIXELS, and when it is not resized the
    ``(H, W)`` of the image ``like`` names (a small file may declare gigabytes of pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's own bound, above ours: refuse
            opened = Image.open(source)
        with opened as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{dataset}: image {where} is {image.width} x {image.height} pixels, more than "
                                 f"{MAX_IMAGE_PIXELS}; refused before decoding")
            if size is None and like is not None and image.size[::-1] != like[1]:
                raise ValueError(f"{dataset}: images differ in size ({where} is {image.size[::-1]}, {like[0]} is "
                                 f"{like[1]}); --image-size resizes cinic10, tiny_imagenet, pacs and imagenet")
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BOX)
            return np.asarray(image).transpose(2, 0, 1)
    except FileNotFoundError:
        raise DataFileError(f"{dataset}: missing image {where}. {hint}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{dataset}: image {where} is too large to decode safely ({error})") from None
    except OSError as error:
        raise ValueError(f"{dataset}: cannot decode image {where}: {error}") from None


def _build_split(
    entries: list[_Entry], classes: list[str] | None, size: int | None, *, dataset: str, hint: str
) -> tuple[Arrays, list[str]]:
    """Decode labelled images in (class, name) order; classes default to the sorted class names present."""
    if not entries:
        raise DataFileError(f"{dataset}: no images found. {hint}")
    classes = sorted({c for c, _, _ in entries}) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for c, _, _ in entries} - set(index))
    if unknown:
        raise ValueError(
            f"{dataset}: images of class(es) {unknown[:5]} that are not among the {len(classes)} known classes "
            f"(first: {classes[:5]})"
        )
    entries = sorted(entries, key=lambda e: (index[e[0]], e[1]))
    first = _decode(entries[0][2], entries[0][1], size, None, dataset=dataset, hint=hint)
    like = (entries[0][1], first.shape[1:])  # each image's size is checked against it before the image is decoded
    arrays = [first] + [_decode(source, where, size, like, dataset=dataset, hint=hint)
                        for _, where, source in entries[1:]]
    labels = np.array([index[c] for c, _, _ in entries], dtype=np.int64)
    return (np.stack(arrays), labels), classes


def _read_image_folder(
    root: Path, size: int | None = None, classes: list[str] | None = None, *, dataset: str, hint: str
) -> tuple[Arrays, list[str]]:
    """An ImageFolder tree ``root/<class>/**/<image>``; other files (e.g. Tiny ImageNet's boxes.txt) are skipped."""
    if root.is_symlink():  # a split's folder, as its class folders below: it may lead anywhere on the machine
        raise ValueError(f"{dataset}: {root} is a symbolic link; image folders must hold the images themselves")
    if not root.is_dir():
        raise DataFileError(f"{dataset}: missing folder {root}. {hint}")
    entries = [(label, str(path), path) for label, path in folder_images(root, dataset=dataset)]
    if not entries:
        raise DataFileError(f"{dataset}: no images in {root} (expected {root}/<class>/<image>). {hint}")
    return _build_split(entries, classes, size, dataset=dataset, hint=hint)


# ---------------------------------------------------------------------------------------------------
# IDX (MNIST layout)

_IDX_MAGIC = {2049: 1, 2051: 3}  # unsigned-byte labels (1-D) and images (3-D)
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


MAX_IDX_BYTES = 1 << 31  # 2 GiB: far above any IDX set of Table 1 (MNIST's training images are 47 MB)


def read_idx(path: Path | str) -> np.ndarray:
    """Read a gzipped or plain IDX file of unsigned bytes: magic 2049 (labels, N) or 2051 (images, N x H x W).

    The whole file is checked against its header, so a truncated download fails here, naming the file. A gzip
    stream is inflated only as far as the header's declared size (plus one byte, to see whether it is longer):
    a small file that inflates to gigabytes fails without filling memory.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as stream:
            head = stream.read(4)
            if len(head) < 4:
                raise ValueError(f"{path}: only {len(head)} bytes, too short for an IDX header")
            magic = int.from_bytes(head, "big")
            if magic not in _IDX_MAGIC:
                raise ValueError(f"{path}: unknown IDX magic number {magic} (expected 2049 for labels or 2051 for "
                                 "images)")
            ndim = _IDX_MAGIC[magic]
            dims = stream.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header ({4 + len(dims)} bytes, need {4 + 4 * ndim})")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            expected = math.prod(shape)  # Python integers: a header of 2^31 x 2^31 x 2^31 cannot overflow
            if expected > MAX_IDX_BYTES:
                raise ValueError(f"{path}: the header {shape} declares {expected} bytes, more than this reader "
                                 f"accepts ({MAX_IDX_BYTES}); a damaged or foreign file?")
            data = stream.read(expected + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: damaged gzip stream ({error}); the file is truncated or corrupt") from None
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        header = 4 + 4 * ndim
        raise ValueError(f"{path}: {problem}: {header + len(data)}{'+' if len(data) > expected else ''} bytes, the "
                         f"header {shape} needs {header + expected}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def load_idx(
    name: str, data_dir: Path | None, *, folders: tuple[str, ...], checksums: dict[str, str] | None, hint: str
) -> Loaded:
    """The four MNIST-named IDX files, looked for in each of ``folders``; gzipped only when checksums are given."""
    base = data_root(data_dir, dataset=name, hint=hint)
    suffixes = (".gz",) if checksums is not None else (".gz", "")  # the known digests are of the gzipped files

    def read(stem: str, ndim: int) -> np.ndarray:
        path = first_existing(base, [f"{folder}/{stem}{suffix}" for folder in folders for suffix in suffixes])
        require_file(path, None if checksums is None else checksums[path.name], dataset=name, hint=hint, within=base)
        array = read_idx(path)
        if array.ndim != ndim:
            raise ValueError(f"{name}: {path} holds a {array.ndim}-D array, expected {ndim}-D (swapped files?)")
        return array

    splits = []
    for split, (images_stem, labels_stem) in _IDX_FILES.items():
        images, labels = read(images_stem, 3), read(labels_stem, 1)
        if len(images) != len(labels):
            raise ValueError(f"{name}: {split} has {len(images)} images but {len(labels)} labels")
        if images.size == 0:
            raise ValueError(f"{name}: the {split} images of the IDX files are empty ({images.shape})")
        splits.append((images[:, None].copy(), labels.astype(np.int64)))
    return splits[0], splits[1], _idx_classes(name, splits[0][1], splits[1][1])


def _idx_classes(name: str, train: np.ndarray, test: np.ndarray) -> list[str]:
    """Classes 0..K-1, every one present in the training labels; a label outside them is a damaged file, not a
    reason to grow the model (one stray 255 would otherwise make a 256-class classifier)."""
    present = np.unique(train)
    if len(present) and not np.array_equal(present, np.arange(len(present))):
        gap = next(int(c) for c in range(int(present.max()) + 1) if c not in set(present.tolist()))
        raise ValueError(f"{name}: the training labels skip class {gap} (they go up to {int(present.max())}); "
                         "a damaged or foreign labels file?")
    unseen = sorted(set(np.unique(test).tolist()) - set(present.tolist()))
    if unseen:
        raise ValueError(f"{name}: test labels {unseen[:5]} never occur in the training labels")
    return [str(i) for i in range(len(present))]


# ---------------------------------------------------------------------------------------------------
# scikit-learn digits


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices (each in file order) with ``round(test_fraction * n_c)`` test rows per class."""
    rng = np.random.default_rng(seed)
    test = np.concatenate([
        rng.permutation(np.flatnonzero(labels == c))[: round(test_fraction * int((labels == c).sum()))]
        for c in np.unique(labels)
    ])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_digits(name: str, data_dir: Path | None, *, seed: int) -> Loaded:
    """scikit-learn's 8x8 digits, from scikit-learn itself (``sklearn.datasets.load_digits``, a file shipped inside
    it): no data folder is needed, so ``data_dir`` is not used. Pixel counts 0..16 are scaled to 0..255; the set
    has no split, so it is split 80/20 by ``seed``."""
    from sklearn.datasets import load_digits as sklearn_digits  # imported here: scikit-learn is slow to import

    bunch = sklearn_digits()
    data, labels = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
    if data.shape != (len(labels), 64) or data.min() < 0 or data.max() > 16:
        raise ValueError(f"{name}: scikit-learn's digits should be 64 pixel counts in 0..16 per image, got an array "
                         f"of shape {data.shape}")
    images = np.rint(data * 255 / 16).astype(np.uint8).reshape(-1, 1, 8, 8)
    train, test = _stratified_split(labels, 0.2, seed)
    return (images[train], labels[train]), (images[test], labels[test]), [str(i) for i in range(10)]


# ---------------------------------------------------------------------------------------------------
# JPEG tarballs (CIFAR-10), decoded once into a cache


def default_cache_dir() -> Path:
    """``$META_NEIGHBORHOODS_CACHE`` or ``~/.cache/meta_neighborhoods``: where decoded image sets are kept."""
    env = os.environ.get("META_NEIGHBORHOODS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "meta_neighborhoods"


def _tarball_entries(path: Path, split: str) -> list[_Entry]:
    """``<split>/<class>/<image>`` members of a tarball, read into memory (CIFAR-10 JPEGs are about 1 KB each)."""
    entries = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            parts = member.name.split("/")
            is_image = len(parts) == 3 and parts[0] == split and Path(parts[2]).suffix.lower() in IMAGE_SUFFIXES
            if member.isfile() and is_image:
                entries.append((parts[1], f"{path}:{member.name}", io.BytesIO(tar.extractfile(member).read())))
    return entries


def _cached_tarball(
    path: Path, digest: str, split: str, cache_dir: Path, *, dataset: str, hint: str
) -> tuple[Arrays, list[str]]:
    """The decoded split from ``<cache_dir>/<stem>-<sha256>.npz``, decoding the tarball first if needed."""
    cache = cache_dir / f"{path.name.split('.')[0]}-{digest}.npz"
    if not cache.is_file():
        (images, labels), classes = _build_split(_tarball_entries(path, split), None, None, dataset=dataset,
                                                 hint=f"{path} should hold {split}/<class>/<image>. {hint}")

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:  # a handle, not the name: np.savez would append ".npz" to a name
                np.savez(handle, images=images, labels=labels, classes=np.array(classes))

        atomic_write(cache, write)  # readers never see a half-written cache
    try:
        stored = np.load(cache, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):  # one array, np.save's
            raise ValueError("an array, not an archive of arrays")
        with stored:
            _check_cache(stored, cache, dataset)
            classes = stored["classes"].tolist()
            if len(set(classes)) != len(classes) or not all(classes):
                raise DataFileError(f"{dataset}: {cache} names its classes {shown(classes)}, not once each; remove "
                                    "it to decode the data again")
            return (stored["images"], stored["labels"]), classes
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError) as error:  # truncated, overwritten, or no .npz
        raise DataFileError(f"{dataset}: {cache} cannot be read as the decoded split it caches ({type(error).__name__}"
                            "); remove it to decode the data again") from None


CACHE_MAX_IMAGES = 100_000  # per cached split, of 3 x 32 x 32 pixels: CIFAR-10's train split holds 50,000


def _check_cache(stored, cache: Path, dataset: str) -> None:
    """What a cache file declares, read from its arrays' headers before the arrays: a compressed file of a few MB
    may inflate to gigabytes (the decoded split that ``_cached_tarball`` writes: images (N, C, H, W) of uint8, N
    labels, a list of class names)."""
    declared = {}
    for name in stored.files:
        with stored.zip.open(f"{name}.npy") as member:
            one = np.lib.format.read_magic(member) == (1, 0)
            declared[name] = (np.lib.format.read_array_header_1_0 if one else np.lib.format.read_array_header_2_0)(member)
    images, labels, classes = (declared.get(name, ((), False, None)) for name in ("images", "labels", "classes"))
    n = images[0][0] if len(images[0]) == 4 else -1
    if not (set(declared) == {"images", "labels", "classes"} and images[2] == np.uint8 and 0 < n <= CACHE_MAX_IMAGES
            and images[0][1:] == (3, 32, 32) and labels[0] == (n,) and labels[2].kind in "iu"
            and len(classes[0]) == 1 and classes[2].kind == "U" and classes[0][0] * classes[2].itemsize <= 1 << 20):
        raise DataFileError(f"{dataset}: {cache} is not a decoded image split of at most {CACHE_MAX_IMAGES} images "
                            f"of 3 x 32 x 32 bytes, their labels and class names; remove it to decode the data again")


def load_jpeg_tarballs(
    name: str, data_dir: Path | None, *, folder: str, checksums: dict[str, str], cache_dir: Path | None, hint: str
) -> Loaded:
    """``<folder>_<split>.tar.gz`` per split, each checked against its sha256, which also keys its cache file."""
    base = data_root(data_dir, dataset=name, hint=hint)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parts = {}
    for split, digest in checksums.items():
        file = f"{folder}_{split}.tar.gz"
        path = require_file(first_existing(base, [f"{folder}/{file}", file]), digest, dataset=name, hint=hint,
                            within=base)
        parts[split] = _cached_tarball(path, digest, split, cache_dir, dataset=name, hint=hint)
    (train, classes), (test, test_classes) = parts["train"], parts["test"]
    if test_classes != classes:
        raise ValueError(f"{name}: train classes {classes} differ from test classes {test_classes}")
    return train, test, classes


# ---------------------------------------------------------------------------------------------------
# Other sets of Table 1, by path only


SVHN_MAX_IMAGES = 100_000  # per file; the official train split holds 73,257


def load_svhn(name: str, data_dir: Path | None, *, hint: str) -> Loaded:
    """The cropped-digits ``.mat`` files; their label 10 means digit 0. What a file declares is checked before it is
    read: a compressed file of a few MB may inflate to gigabytes."""
    from scipy.io import loadmat, whosmat  # imported here: scipy is slow to import and only SVHN needs it

    base = data_root(data_dir, dataset=name, hint=hint)
    splits = []
    for split in ("train", "test"):
        file = f"{split}_32x32.mat"
        path = require_file(first_existing(base, [f"svhn/{file}", file]), None, dataset=name, hint=hint, within=base)
        declared = {entry[0]: tuple(entry[1]) for entry in whosmat(path)}
        n = declared.get("X", (0,))[-1]
        if declared.get("X") != (32, 32, 3, n) or declared.get("y") != (n, 1) or not 0 < n <= SVHN_MAX_IMAGES:
            raise ValueError(f"{name}: {path} should hold X (32, 32, 3, N) and y (N, 1), N at most {SVHN_MAX_IMAGES}, "
                             f"got {declared}")
        mat = loadmat(path, variable_names=["X", "y"])
        images, labels = mat["X"], mat["y"].reshape(-1)
        if images.shape != (32, 32, 3, n) or not np.isin(labels, np.arange(1, 11)).all():
            raise ValueError(f"{name}: {path} should hold uint8 images and labels 1..10")
        labels = labels.astype(np.int64)
        splits.append((np.ascontiguousarray(images.transpose(3, 2, 0, 1), dtype=np.uint8), labels % 10))
    return splits[0], splits[1], [str(i) for i in range(10)]


def load_folders(
    name: str, data_dir: Path | None, *, folder: str, splits: tuple[str, str], image_size: int | None, hint: str
) -> Loaded:
    """Train and test ImageFolder trees; the test split must use the train split's classes."""
    root = folder_root(data_dir, folder, splits[0], dataset=name, hint=hint)
    train, classes = _read_image_folder(root / splits[0], image_size, dataset=name, hint=hint)
    test, _ = _read_image_folder(root / splits[1], image_size, classes, dataset=name, hint=hint)
    return train, test, classes


def load_tiny_imagenet(name: str, data_dir: Path | None, *, image_size: int | None, hint: str) -> Loaded:
    """``tiny-imagenet-200/`` as distributed; its test set has no labels, so ``val`` is the test split."""
    root = folder_root(data_dir, "tiny-imagenet-200", "wnids.txt", dataset=name, hint=hint)
    classes = read_text(root / "wnids.txt", dataset=name, hint=hint, within=root).split()
    if not classes:  # else refused as images of classes "not among the 0 known classes", the file unnamed
        raise ValueError(f"{name}: {root / 'wnids.txt'} lists no classes")
    repeated = [wnid for wnid, count in Counter(classes).items() if count > 1]
    if repeated:  # it would make a class no image has, and a model with one output too many
        raise ValueError(f"{name}: {root / 'wnids.txt'} names {repeated[0]} more than once")
    train, _ = _read_image_folder(root / "train", image_size, classes, dataset=name, hint=hint)
    entries = listed_images(root / "val" / "val_annotations.txt", root / "val" / "images", root, "\t", classes,
                            dataset=name, hint=hint)
    test, _ = _build_split(entries, classes, image_size, dataset=name, hint=hint)
    return train, test, classes


def load_mnist_m(name: str, data_dir: Path | None, *, hint: str) -> Loaded:
    """``mnist_m/`` as distributed: a PNG folder per split, listed with labels in ``mnist_m_<split>_labels.txt``."""
    root = folder_root(data_dir, "mnist_m", "mnist_m_train_labels.txt", dataset=name, hint=hint)
    classes = [str(i) for i in range(10)]
    splits = []
    for split in ("train", "test"):
        entries = listed_images(root / f"mnist_m_{split}_labels.txt", root / f"mnist_m_{split}", root, None, classes,
                                dataset=name, hint=hint)
        splits.append(_build_split(entries, classes, None, dataset=name, hint=hint)[0])
    return splits[0], splits[1], classes
