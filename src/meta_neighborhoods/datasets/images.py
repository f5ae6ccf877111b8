"""Image classification data sets (paper Table 1) by name: one registry, local files only, uint8 in memory.

``load_image_dataset(name, data_dir=None, cache_dir=None, **options)`` returns an ``ImageDataset`` whose splits hold
``(N, C, H, W)`` uint8 images and int64 labels. ``data_dir`` defaults to ``shared_data_dir()`` (``../shared/data``).
Each loader looks in ``<data_dir>/<folder>/`` first, then in ``<data_dir>/`` itself:

* ``mnist`` - the four gzipped IDX files (``train-images-idx3-ubyte.gz`` ...) in ``mnist/``; sha256 checked.
* ``idx`` - any data set in MNIST's IDX layout (e.g. Fashion-MNIST), the same four names, gzipped or plain, directly
  in ``data_dir``; no checksum, so the same loader serves files whose digests are not MNIST's.
* ``digits`` - scikit-learn's 8x8 digits (``sklearn_digits/digits.csv.gz``, sha256 checked). Pixel counts 0..16 are
  scaled to 0..255 (``round(x * 255 / 16)``, half to even). The file has no split, so a stratified 80/20 split is drawn
  with ``numpy.random.default_rng(DIGITS_SPLIT_SEED)`` (seed 0): ``round(0.2 * n_class)`` test images per class.
* ``cifar10`` - ``cifar10_jpg/cifar10_jpg_{train,test}.tar.gz`` (``<split>/<class>/NNNN.jpg``, sha256 checked). The
  JPEGs are decoded once into ``<cache_dir>/<tarball stem>-<sha256>.npz``; later loads read that file.
  ``cache_dir`` defaults to ``$META_NEIGHBORHOODS_CACHE`` or ``~/.cache/meta_neighborhoods``.
* ``cifar100`` - the official python version, ``cifar-100-python/{train,test,meta}``; fine labels.
* ``svhn`` - the official cropped-digits files ``svhn/{train,test}_32x32.mat`` (``extra_32x32.mat`` is not used);
  label 10 means digit 0.
* ``cinic10`` - ``cinic10/{train,test}/<class>/*.png`` (the ``valid/`` folder is not used).
* ``tiny_imagenet`` - ``tiny-imagenet-200/`` as distributed: ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG``
  with ``val/val_annotations.txt``; classes in the order of ``wnids.txt``. The official test set has no labels, so
  ``val`` is the test split. Native 64x64; ``image_size`` resizes.
* ``mnist_m`` - ``mnist_m/`` as distributed: ``mnist_m_{train,test}/*.png`` with ``mnist_m_{train,test}_labels.txt``
  (lines ``name label``).
* ``pacs`` - ``pacs/{train,test}/<class>/*``: arrange the domains yourself (e.g. three source domains in ``train``, the
  target domain in ``test``). Native 227x227; ``image_size`` resizes.
* ``imagenet`` - ``imagenet/{train,val}/<class>/*.JPEG`` (``val`` sorted into class folders, as torchvision expects).
  Resized to ``image_size`` x ``image_size`` (default 32, to keep CPU runs practical; the aspect ratio is not kept,
  as in Chrabaszcz et al.'s downsampled ImageNet).

Resizing uses Pillow's BOX filter (an area average, so downsampling does not alias). Folder formats are decoded on
every load (no cache); only ``cifar10`` is cached.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .files import DataFileError, require_file, shared_data_dir

__all__ = [
    "ImageSplit",
    "ImageDataset",
    "ImageSpec",
    "IMAGE_DATASETS",
    "available_image_datasets",
    "load_image_dataset",
    "read_idx",
    "default_cache_dir",
    "ImageBatches",
    "DIGITS_SPLIT_SEED",
]

DIGITS_SPLIT_SEED = 0
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp"}


@dataclass(eq=False)  # eq=False: arrays have no single truth value
class ImageSplit:
    """Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64; kept as uint8 to hold CIFAR-size sets in memory."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        # Catch a loader bug here rather than as a shape error inside training.
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.dtype != np.int64 or self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be ({len(self.images)},) int64, got {self.labels.shape} {self.labels.dtype}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(eq=False)
class ImageDataset:
    """Both splits plus what training needs: class names, train-split channel mean/std in [0, 1], augmentation."""

    name: str
    train: ImageSplit
    test: ImageSplit
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # "none" | "crop_flip"


@dataclass(frozen=True)
class ImageSpec:
    """A registry entry: the loader, its fixed options, and which of them a caller may override."""

    loader: Callable[..., tuple[ImageSplit, ImageSplit, list[str]]]
    options: dict[str, Any] = field(default_factory=dict)
    augment: str = "none"
    settable: tuple[str, ...] = ()
    cached: bool = False  # the loader takes ``cache_dir``

    def load(self, name: str, data_dir: Path | None, cache_dir: Path | None, overrides: dict[str, Any]) -> ImageDataset:
        unknown = sorted(set(overrides) - set(self.settable))
        if unknown:
            accepted = list(self.settable) or "none"
            raise ValueError(f"{name}: unknown option(s) {unknown}; this data set accepts {accepted}")
        options = {**self.options, **overrides}
        if self.cached:
            options["cache_dir"] = cache_dir
        train, test, classes = self.loader(name, data_dir, **options)
        return _dataset(name, train, test, classes, self.augment)


def _dataset(name: str, train: ImageSplit, test: ImageSplit, classes: list[str], augment: str) -> ImageDataset:
    """Check labels against the class list and attach the train-split channel statistics."""
    for split, part in (("train", train), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"{name}: the {split} split is empty")
        if part.labels.min() < 0 or part.labels.max() >= len(classes):
            raise ValueError(f"{name}: {split} labels fall outside 0..{len(classes) - 1}")
        if part.images.shape[1:] != train.images.shape[1:]:
            raise ValueError(
                f"{name}: train images are {train.images.shape[1:]} but {split} images {part.images.shape[1:]}"
            )
    mean, std = _channel_stats(train.images)
    return ImageDataset(name, train, test, list(classes), mean, std, augment)


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images / 255``, exact, from a 256-bin histogram (no float copy of the set)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = np.bincount(images[:, channel].ravel(), minlength=256).astype(np.float64)
        mean = float(counts @ values / counts.sum())
        means.append(mean)
        stds.append(float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum())))
    return tuple(means), tuple(stds)


# ---------------------------------------------------------------------------------------------------
# Finding files


def _data_root(data_dir: Path | None, *, dataset: str, hint: str) -> Path:
    base = data_dir if data_dir is not None else shared_data_dir()
    if base is None:
        raise DataFileError(
            f"{dataset}: no data directory was given and ../shared/data does not exist "
            f"($META_NEIGHBORHOODS_DATA is unset). {hint}"
        )
    return Path(base)


def _first_existing(base: Path, candidates: list[str]) -> Path:
    """The first candidate path (file or folder) that exists, else the first one, so that the error names it."""
    paths = [base / c for c in candidates]
    return next((p for p in paths if p.exists()), paths[0])


def _folder_root(data_dir: Path | None, folder: str, marker: str, *, dataset: str, hint: str) -> Path:
    """``<data_dir>/<folder>`` if it holds ``marker``, else ``<data_dir>`` if that does; otherwise DataFileError."""
    base = _data_root(data_dir, dataset=dataset, hint=hint)
    found = _first_existing(base, [f"{folder}/{marker}", marker])
    if not found.exists():
        raise DataFileError(f"{dataset}: missing {found} (also looked for {base / marker}). {hint}")
    return found.parent


def default_cache_dir() -> Path:
    """``$META_NEIGHBORHOODS_CACHE`` or ``~/.cache/meta_neighborhoods``: where decoded image sets are kept."""
    env = os.environ.get("META_NEIGHBORHOODS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "meta_neighborhoods"


# ---------------------------------------------------------------------------------------------------
# Decoding images (shared by every folder, list and tarball format)


def _decode(source: Path | io.BytesIO, where: str, size: int | None, *, dataset: str, hint: str) -> np.ndarray:
    """One image as ``(3, H, W)`` uint8 (grey and palette images become RGB); ``where`` names it in errors."""
    try:
        with Image.open(source) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BOX)
            return np.asarray(image).transpose(2, 0, 1)
    except FileNotFoundError:
        raise DataFileError(f"{dataset}: missing image {where}. {hint}") from None
    except OSError as error:
        raise ValueError(f"{dataset}: cannot decode image {where}: {error}") from None


Entry = tuple[str, str, Any]  # (class name, where - for errors and ordering, path or file object)


def _build_split(
    entries: list[Entry], classes: list[str] | None, size: int | None, *, dataset: str, hint: str
) -> tuple[ImageSplit, list[str]]:
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
    arrays = [_decode(source, where, size, dataset=dataset, hint=hint) for _, where, source in entries]
    first = arrays[0].shape
    for array, (_, where, _) in zip(arrays, entries):
        if array.shape != first:
            raise ValueError(
                f"{dataset}: images differ in size ({where} is {array.shape[1:]}, {entries[0][1]} is {first[1:]}); "
                "pass image_size to resize them"
            )
    labels = np.array([index[c] for c, _, _ in entries], dtype=np.int64)
    return ImageSplit(np.stack(arrays), labels), classes


def _read_image_folder(
    root: Path, size: int | None = None, classes: list[str] | None = None, *, dataset: str, hint: str
) -> tuple[ImageSplit, list[str]]:
    """An ImageFolder tree ``root/<class>/**/<image>``; other files (e.g. Tiny ImageNet's boxes.txt) are skipped."""
    if not root.is_dir():
        raise DataFileError(f"{dataset}: missing folder {root}. {hint}")
    entries = [
        (folder.name, str(path), path)
        for folder in root.iterdir()
        if folder.is_dir()
        for path in folder.rglob("*")
        if path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file()
    ]
    if not entries:
        raise DataFileError(f"{dataset}: no images in {root} (expected {root}/<class>/<image>). {hint}")
    return _build_split(entries, classes, size, dataset=dataset, hint=hint)


# ---------------------------------------------------------------------------------------------------
# IDX (MNIST layout)

_IDX_MAGIC = {2049: 1, 2051: 3}  # unsigned-byte labels (1-D) and images (3-D)


def read_idx(path: Path | str) -> np.ndarray:
    """Read a gzipped or plain IDX file of unsigned bytes: magic 2049 (labels, N) or 2051 (images, N x H x W).

    The whole file is checked against its header, so a truncated download fails here, naming the file.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (EOFError, gzip.BadGzipFile) as error:
        raise ValueError(f"{path}: damaged gzip stream ({error}); the file is truncated or corrupt") from None
    if len(data) < 4:
        raise ValueError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_MAGIC:
        raise ValueError(f"{path}: unknown IDX magic number {magic} (expected 2049 for labels or 2051 for images)")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(f"{path}: {problem}: {len(data)} bytes, the header {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_SHA256 = {  # from shared/data/mnist/PROVENANCE.md
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
}


def _load_idx(
    name: str, data_dir: Path | None, *, folders: tuple[str, ...], checksums: dict[str, str] | None, hint: str
) -> tuple[ImageSplit, ImageSplit, list[str]]:
    base = _data_root(data_dir, dataset=name, hint=hint)
    suffixes = (".gz",) if checksums is not None else (".gz", "")  # the known digests are of the gzipped files

    def read(stem: str, ndim: int) -> np.ndarray:
        path = _first_existing(base, [f"{folder}/{stem}{suffix}" for folder in folders for suffix in suffixes])
        require_file(path, None if checksums is None else checksums[path.name], dataset=name, hint=hint)
        array = read_idx(path)
        if array.ndim != ndim:
            raise ValueError(f"{name}: {path} holds a {array.ndim}-D array, expected {ndim}-D (swapped files?)")
        return array

    splits = []
    for split, (images_stem, labels_stem) in _IDX_FILES.items():
        images, labels = read(images_stem, 3), read(labels_stem, 1)
        if len(images) != len(labels):
            raise ValueError(f"{name}: {split} has {len(images)} images but {len(labels)} labels")
        splits.append(ImageSplit(images[:, None].copy(), labels.astype(np.int64)))
    n_classes = int(max(s.labels.max() for s in splits)) + 1
    return splits[0], splits[1], [str(i) for i in range(n_classes)]


# ---------------------------------------------------------------------------------------------------
# scikit-learn digits

DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


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


def _load_digits(name: str, data_dir: Path | None, *, hint: str) -> tuple[ImageSplit, ImageSplit, list[str]]:
    base = _data_root(data_dir, dataset=name, hint=hint)
    path = require_file(_first_existing(base, ["sklearn_digits/digits.csv.gz", "digits.csv.gz"]), DIGITS_SHA256,
                        dataset=name, hint=hint)
    data = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if data.shape[1] != 65 or data[:, :64].min() < 0 or data[:, :64].max() > 16:
        raise ValueError(f"{name}: {path} should have 64 pixel counts in 0..16 plus a label per row")
    images = np.rint(data[:, :64] * 255 / 16).astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = data[:, 64].astype(np.int64)
    train, test = _stratified_split(labels, 0.2, DIGITS_SPLIT_SEED)
    return (ImageSplit(images[train], labels[train]), ImageSplit(images[test], labels[test]),
            [str(i) for i in range(10)])


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 as JPEG tarballs, decoded once into a cache

CIFAR10_JPG_SHA256 = {  # from shared/data/cifar10_jpg/PROVENANCE.md
    "train": "45a63b9dd7542b37404b94f3e6f0269562f89fe2ff16ed505e6a327bb8c68449",
    "test": "f225cabdd5279430dd56749e356119671fe0cd2bf543e78d20c27af441d80951",
}


def _tarball_entries(path: Path, split: str) -> list[Entry]:
    """``<split>/<class>/<image>`` members of a tarball, read into memory (CIFAR-10 JPEGs are about 1 KB each)."""
    entries = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            parts = member.name.split("/")
            is_image = len(parts) == 3 and parts[0] == split and Path(parts[2]).suffix.lower() in _IMAGE_SUFFIXES
            if member.isfile() and is_image:
                entries.append((parts[1], f"{path}:{member.name}", io.BytesIO(tar.extractfile(member).read())))
    return entries


def _write_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(handle, **arrays)
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600; the cache holds nothing private
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def _cached_tarball(
    path: Path, digest: str, split: str, cache_dir: Path, *, dataset: str, hint: str
) -> tuple[ImageSplit, list[str]]:
    """The decoded split from ``<cache_dir>/<stem>-<sha256>.npz``, decoding the tarball first if needed."""
    cache = cache_dir / f"{path.name.split('.')[0]}-{digest}.npz"
    if not cache.is_file():
        part, classes = _build_split(_tarball_entries(path, split), None, None, dataset=dataset,
                                     hint=f"{path} should hold {split}/<class>/<image>. {hint}")
        _write_npz_atomically(cache, images=part.images, labels=part.labels, classes=np.array(classes))
    with np.load(cache, allow_pickle=False) as stored:
        return ImageSplit(stored["images"], stored["labels"]), stored["classes"].tolist()


def _load_jpeg_tarballs(
    name: str, data_dir: Path | None, *, folder: str, checksums: dict[str, str], cache_dir: Path | None, hint: str
) -> tuple[ImageSplit, ImageSplit, list[str]]:
    """``<folder>_<split>.tar.gz`` per split, each checked against its sha256, which also keys its cache file."""
    base = _data_root(data_dir, dataset=name, hint=hint)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    parts = {}
    for split, digest in checksums.items():
        file = f"{folder}_{split}.tar.gz"
        path = require_file(_first_existing(base, [f"{folder}/{file}", file]), digest, dataset=name, hint=hint)
        parts[split] = _cached_tarball(path, digest, split, cache_dir, dataset=name, hint=hint)
    (train, classes), (test, test_classes) = parts["train"], parts["test"]
    if test_classes != classes:
        raise ValueError(f"{name}: train classes {classes} differ from test classes {test_classes}")
    return train, test, classes


# ---------------------------------------------------------------------------------------------------
# Other sets of Table 1, by path only


def _load_cifar100(name: str, data_dir: Path | None, *, hint: str) -> tuple[ImageSplit, ImageSplit, list[str]]:
    """The official python pickles. ``pickle`` can run code, so only load the files downloaded from the CIFAR page."""
    root = _folder_root(data_dir, "cifar-100-python", "meta", dataset=name, hint=hint)

    def unpickle(file: str) -> dict:
        path = require_file(root / file, None, dataset=name, hint=hint)
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="bytes")

    classes = [c.decode() for c in unpickle("meta")[b"fine_label_names"]]
    splits = []
    for file in ("train", "test"):
        batch = unpickle(file)
        data, labels = np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"fine_labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise ValueError(f"{name}: {root / file} should hold N x 3072 pixels and N fine labels, got {data.shape}")
        splits.append(ImageSplit(data.reshape(-1, 3, 32, 32), labels))
    return splits[0], splits[1], classes


def _load_svhn(name: str, data_dir: Path | None, *, hint: str) -> tuple[ImageSplit, ImageSplit, list[str]]:
    from scipy.io import loadmat  # imported here: scipy is slow to import and only SVHN needs it

    base = _data_root(data_dir, dataset=name, hint=hint)
    splits = []
    for split in ("train", "test"):
        file = f"{split}_32x32.mat"
        path = require_file(_first_existing(base, [f"svhn/{file}", file]), None, dataset=name, hint=hint)
        mat = loadmat(path)
        images, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64)
        if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
            raise ValueError(f"{name}: {path} should hold X (32, 32, 3, N) and y (N, 1), got {images.shape}")
        if labels.min() < 1 or labels.max() > 10:
            raise ValueError(f"{name}: {path} has labels outside 1..10")
        splits.append(ImageSplit(np.ascontiguousarray(images.transpose(3, 2, 0, 1), dtype=np.uint8), labels % 10))
    return splits[0], splits[1], [str(i) for i in range(10)]


def _load_folders(
    name: str, data_dir: Path | None, *, folder: str, splits: tuple[str, str], image_size: int | None, hint: str
) -> tuple[ImageSplit, ImageSplit, list[str]]:
    """Train and test ImageFolder trees; the test split must use the train split's classes."""
    root = _folder_root(data_dir, folder, splits[0], dataset=name, hint=hint)
    train, classes = _read_image_folder(root / splits[0], image_size, dataset=name, hint=hint)
    test, _ = _read_image_folder(root / splits[1], image_size, classes, dataset=name, hint=hint)
    return train, test, classes


def _load_tiny_imagenet(
    name: str, data_dir: Path | None, *, image_size: int | None, hint: str
) -> tuple[ImageSplit, ImageSplit, list[str]]:
    root = _folder_root(data_dir, "tiny-imagenet-200", "wnids.txt", dataset=name, hint=hint)
    classes = (root / "wnids.txt").read_text().split()
    train, _ = _read_image_folder(root / "train", image_size, classes, dataset=name, hint=hint)
    annotations = require_file(root / "val" / "val_annotations.txt", None, dataset=name, hint=hint)
    entries = [
        (fields[1], str(root / "val" / "images" / fields[0]), root / "val" / "images" / fields[0])
        for fields in (line.split("\t") for line in annotations.read_text().splitlines() if line.strip())
    ]
    test, _ = _build_split(entries, classes, image_size, dataset=name, hint=hint)
    return train, test, classes


def _load_mnist_m(name: str, data_dir: Path | None, *, hint: str) -> tuple[ImageSplit, ImageSplit, list[str]]:
    root = _folder_root(data_dir, "mnist_m", "mnist_m_train_labels.txt", dataset=name, hint=hint)
    classes = [str(i) for i in range(10)]
    splits = []
    for split in ("train", "test"):
        listing = require_file(root / f"mnist_m_{split}_labels.txt", None, dataset=name, hint=hint)
        folder = root / f"mnist_m_{split}"
        entries = []
        for lineno, line in enumerate(listing.read_text().splitlines(), start=1):
            fields = line.split()
            if len(fields) != 2:
                if fields:
                    raise ValueError(f"{name}: {listing} line {lineno} should be 'name label', got {line!r}")
                continue
            entries.append((fields[1], str(folder / fields[0]), folder / fields[0]))
        splits.append(_build_split(entries, classes, None, dataset=name, hint=hint)[0])
    return splits[0], splits[1], classes


# ---------------------------------------------------------------------------------------------------
# Registry


def _hint(what: str, where: str) -> str:
    return f"Put {what} in DIR/{where} (or DIR/) and pass --data-dir DIR."


IMAGE_DATASETS: dict[str, ImageSpec] = {
    "mnist": ImageSpec(_load_idx, {
        "folders": ("mnist", "."), "checksums": MNIST_SHA256,
        "hint": _hint("the four gzipped MNIST IDX files (train-images-idx3-ubyte.gz, ...)", "mnist/"),
    }),
    "idx": ImageSpec(_load_idx, {
        "folders": (".",), "checksums": None,
        "hint": "Put the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in DIR and pass --data-dir DIR.",
    }),
    "digits": ImageSpec(_load_digits, {
        "hint": _hint("digits.csv.gz from scikit-learn's sklearn/datasets/data/", "sklearn_digits/"),
    }),
    "cifar10": ImageSpec(_load_jpeg_tarballs, {
        "folder": "cifar10_jpg", "checksums": CIFAR10_JPG_SHA256,
        "hint": _hint("cifar10_jpg_train.tar.gz and cifar10_jpg_test.tar.gz "
                      "(see shared/data/cifar10_jpg/PROVENANCE.md)", "cifar10_jpg/"),
    }, augment="crop_flip", cached=True),
    "cifar100": ImageSpec(_load_cifar100, {
        "hint": _hint("the official CIFAR-100 python version (train, test, meta from cifar-100-python.tar.gz)",
                      "cifar-100-python/"),
    }, augment="crop_flip"),
    "svhn": ImageSpec(_load_svhn, {
        "hint": _hint("the official SVHN train_32x32.mat and test_32x32.mat", "svhn/"),
    }),
    "cinic10": ImageSpec(_load_folders, {
        "folder": "cinic10", "splits": ("train", "test"), "image_size": None,
        "hint": _hint("the CINIC-10 folders train/<class>/*.png and test/<class>/*.png", "cinic10/"),
    }, augment="crop_flip", settable=("image_size",)),
    "tiny_imagenet": ImageSpec(_load_tiny_imagenet, {
        "image_size": None,
        "hint": _hint("the unpacked tiny-imagenet-200 folder (wnids.txt, train/, val/)", "tiny-imagenet-200/"),
    }, settable=("image_size",)),
    "mnist_m": ImageSpec(_load_mnist_m, {
        "hint": _hint("the unpacked MNIST-M folders mnist_m_train/, mnist_m_test/ and their *_labels.txt", "mnist_m/"),
    }),
    "pacs": ImageSpec(_load_folders, {
        "folder": "pacs", "splits": ("train", "test"), "image_size": None,
        "hint": _hint("PACS images as train/<class>/* and test/<class>/* (domains arranged by you)", "pacs/"),
    }, settable=("image_size",)),
    "imagenet": ImageSpec(_load_folders, {
        "folder": "imagenet", "splits": ("train", "val"), "image_size": 32,
        "hint": _hint("ImageNet as train/<class>/*.JPEG and val/<class>/*.JPEG", "imagenet/"),
    }, settable=("image_size",)),
}


def available_image_datasets() -> list[str]:
    """Registered names, in registry order."""
    return list(IMAGE_DATASETS)


def load_image_dataset(
    name: str, data_dir: Path | str | None = None, cache_dir: Path | str | None = None, **options: Any
) -> ImageDataset:
    """Load a registered image data set (see the module docstring); ``options`` e.g. ``image_size`` for imagenet."""
    spec = IMAGE_DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown image data set {name!r}; known: {', '.join(IMAGE_DATASETS)}")
    return spec.load(name, Path(data_dir) if data_dir is not None else None,
                     Path(cache_dir) if cache_dir is not None else None, options)


# ---------------------------------------------------------------------------------------------------
# Mini-batches


class ImageBatches:
    """Mini-batches ``(x, y)`` of one split: x float32 ``(B, C, H, W)`` normalised with mean/std, y int64.

    Every pass draws fresh randomness (shuffle order, crops, flips) from ``(seed, epoch)``; the epoch counts
    passes and is part of ``state_dict()``, so a resumed run sees the same batches as an uninterrupted one.
    ``subset`` keeps the first ``subset`` images of a permutation drawn from ``seed`` (fixed across epochs) for
    quick CPU runs. ``augment="crop_flip"`` zero-pads by 4 pixels, takes a random crop of the original size and
    flips half the images horizontally (standard CIFAR). ``shard=(rank, world_size)``: this process takes every
    ``world_size``-th image of each global batch of ``batch_size`` (multi-process training), and a last global
    batch too small to give every process an image is dropped.
    """

    def __init__(
        self,
        split: ImageSplit,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int = 0,
        augment: str = "none",
        subset: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if augment not in ("none", "crop_flip"):
            raise ValueError(f"augment must be 'none' or 'crop_flip', got {augment!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(mean) != split.images.shape[1] or len(std) != split.images.shape[1]:
            raise ValueError(f"mean/std need one value per channel ({split.images.shape[1]})")
        if not 0 <= shard[0] < shard[1] <= batch_size:
            raise ValueError(f"shard (rank, world size) = {shard} needs 0 <= rank < world size <= batch size")
        self.split, self.batch_size, self.shuffle, self.seed, self.augment = split, batch_size, shuffle, seed, augment
        self.shard = shard
        self.indices = np.arange(len(split))
        if subset is not None:
            if not 1 <= subset <= len(split):
                raise ValueError(f"subset must be in 1..{len(split)}, got {subset}")
            self.indices = np.sort(np.random.default_rng(seed).permutation(len(split))[:subset])
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        self.epoch += 1
        order = self.indices
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=generator).numpy()]
        rank, world_size = self.shard
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < world_size:
                break
            batch = batch[rank::world_size]
            x = torch.from_numpy(self.split.images[batch]).float().div_(255)
            if self.augment == "crop_flip":
                x = _crop_flip(x, generator)
            yield (x - self.mean) / self.std, torch.from_numpy(self.split.labels[batch])


def _crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random padded crop plus horizontal flip for the whole batch with one gather (no per-image Python loop)."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    flip = torch.rand(b, 1, generator=generator) < 0.5
    rows = top + torch.arange(h)
    columns = left + torch.where(flip, torch.arange(w - 1, -1, -1), torch.arange(w))
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], columns[:, None, None, :]]
