"""Image classification data sets (paper Table 1) by name: one registry, local files only, uint8 in memory.

``load_image_dataset(name, data_dir=None, cache_dir=None, **options)`` returns an ``ImageDataset`` whose splits hold
``(N, C, H, W)`` uint8 images and int64 labels. ``data_dir`` defaults to ``shared_data_dir()`` (``../shared/data``).
Each loader looks in ``<data_dir>/<folder>/`` first, then in ``<data_dir>/`` itself:

* ``mnist`` - the four gzipped IDX files (``train-images-idx3-ubyte.gz`` ...) in ``mnist/``; sha256 checked.
* ``idx`` - any data set in MNIST's IDX layout (e.g. Fashion-MNIST), the same four names, gzipped or plain, directly
  in ``data_dir``; no checksum, so the same loader serves files whose digests are not MNIST's. The classes are the
  labels found (0..K-1, each present in the training labels); shapes and label ranges are checked.
* ``digits`` - scikit-learn's 8x8 digits, from ``sklearn.datasets.load_digits`` (they ship inside scikit-learn: no
  data folder is needed, ``data_dir`` is not used). Pixel counts 0..16 are scaled to 0..255 (``round(x * 255 / 16)``,
  half to even). The set has no split, so a stratified 80/20 split is drawn with
  ``numpy.random.default_rng(DIGITS_SPLIT_SEED)`` (seed 0): ``round(0.2 * n_class)`` test images per class.
* ``cifar10`` - the official python version, ``cifar-10-batches-py/`` (``data_batch_1`` ... ``_5``, ``test_batch``,
  ``batches.meta``), when it is there; else the JPEG copy ``cifar10_jpg/cifar10_jpg_{train,test}.tar.gz``
  (``<split>/<class>/NNNN.jpg``, sha256 checked, re-encoded from the official pixels: not the same numbers). Its
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
every load (no cache); only the JPEG copy of ``cifar10`` is cached.
An image's size is read from its header and checked before it is decoded: one over 64 Mpixels, or, without
``image_size``, of another size than the split's first image, is refused.

This module says which files make which data set; ``image_formats`` reads them and ``batches`` feeds training.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..validation import ConfigError
from .cifar_python import CIFAR10_FOLDER, load_cifar10_python, load_cifar100
from .files import DataFileError, data_root, first_existing
from .image_formats import (
    Loaded,
    load_digits,
    load_folders,
    load_idx,
    load_jpeg_tarballs,
    load_mnist_m,
    load_svhn,
    load_tiny_imagenet,
)

__all__ = [
    "ImageSplit",
    "ImageDataset",
    "ImageSpec",
    "IMAGE_DATASETS",
    "available_image_datasets",
    "load_image_dataset",
    "DIGITS_SPLIT_SEED",
]

DIGITS_SPLIT_SEED = 0


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
    pixels: str = ""  # how the loader made the images' 8-bit pixels, where not as the files hold them


@dataclass(frozen=True)
class ImageSpec:
    """A registry entry: the loader, its fixed options, and which of them a caller may override."""

    loader: Callable[..., Loaded]
    options: dict[str, Any] = field(default_factory=dict)
    augment: str = "none"
    settable: tuple[str, ...] = ()
    cached: bool = False  # the loader takes ``cache_dir``
    pixels: str = ""  # how the loader makes 8-bit pixels of what the files hold, where they differ (besides resizing)

    def load(self, name: str, data_dir: Path | None, cache_dir: Path | None, overrides: dict[str, Any]) -> ImageDataset:
        unknown = sorted(set(overrides) - set(self.settable))
        if unknown == ["image_size"]:  # the one option there is: say which sets take it
            resizable = [other for other, spec in IMAGE_DATASETS.items() if "image_size" in spec.settable]
            raise ConfigError(f"{name} keeps its own image size: --image-size (image_size) resizes "
                              f"{', '.join(resizable)} only", "image_size")
        if unknown:
            accepted = list(self.settable) or "none"
            raise ConfigError(f"{name}: unknown option(s) {unknown}; this data set accepts {accepted}")
        options = {**self.options, **overrides}
        if self.cached:
            options["cache_dir"] = cache_dir
        try:
            train, test, classes = self.loader(name, data_dir, **options)
        except Exception as error:  # noqa: BLE001 (files are untrusted: whatever a decoder raises, one line)
            if _says_where(error, name):
                raise
            folders = f"{data_dir or 'the default data folder'}" + (f" or the cache {cache_dir}" if cache_dir else "")
            raise DataFileError(f"{name}: a file under {folders} cannot be read as this data set "
                                f"({type(error).__name__}: {error})") from error
        resized = options.get("image_size")
        pixels = "; ".join(filter(None, (self.pixels, resized and f"resized to {resized} x {resized} pixels with "
                                                                 "Pillow's BOX filter (an area average)")))
        return _dataset(name, ImageSplit(*train), ImageSplit(*test), classes, self.augment, pixels)


def _says_where(error: Exception, name: str) -> bool:
    """Whether a loader's error names where it arose: ours name the data set or the file, the system's its path; a
    decoder's (PIL's, scipy's, numpy's: a KeyError, a SyntaxError, a bare MemoryError) may name neither."""
    if isinstance(error, (ConfigError, DataFileError)) or (isinstance(error, OSError) and error.errno is not None):
        return True  # ours, or the system's (an unwritable cache folder): each names its path
    text = str(error)
    return isinstance(error, ValueError) and (text.startswith(f"{name}:") or os.path.isfile(text.split(": ")[0]))


def _dataset(name: str, train: ImageSplit, test: ImageSplit, classes: list[str], augment: str,
             pixels: str) -> ImageDataset:
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
    untrained = [classes[i] for i in np.flatnonzero(np.bincount(train.labels, minlength=len(classes)) == 0)]
    if untrained:  # a class no training image shows: the network has an output that nothing trains
        warnings.warn(f"{name}: {len(untrained)} of its {len(classes)} classes have no training image "
                      f"({', '.join(map(str, untrained[:5]))}{', ...' * (len(untrained) > 5)}): the network cannot "
                      "learn them", UserWarning, stacklevel=2)
    mean, std = _channel_stats(train.images)
    if min(std) == 0:  # normalising by it would make every input NaN
        channel = std.index(0.0)
        raise ValueError(f"{name}: channel {channel} of every training image is the same value "
                         f"({mean[channel] * 255:.0f}): the files hold no image to learn from")
    return ImageDataset(name, train, test, list(classes), mean, std, augment, pixels)


STATS_BLOCK_PIXELS = 1 << 24  # pixels of one channel counted at a time (128 MB as int64)


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images / 255``, exact, from a 256-bin histogram counted a block of images at a
    time (``bincount`` widens what it counts to int64: a whole channel of a large set would take 8x its bytes)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    block = max(1, STATS_BLOCK_PIXELS // max(1, images[0, 0].size))  # images per block
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = sum((np.bincount(images[start:start + block, channel].ravel(), minlength=256)
                      for start in range(0, len(images), block)), np.zeros(256, np.int64)).astype(np.float64)
        mean = float(counts @ values / counts.sum())
        means.append(mean)
        stds.append(float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum())))
    return tuple(means), tuple(stds)


# ---------------------------------------------------------------------------------------------------
# Checksums of the files the registry names

MNIST_SHA256 = {  # from shared/data/mnist/PROVENANCE.md
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
}
CIFAR10_JPG_SHA256 = {  # from shared/data/cifar10_jpg/PROVENANCE.md
    "train": "45a63b9dd7542b37404b94f3e6f0269562f89fe2ff16ed505e6a327bb8c68449",
    "test": "f225cabdd5279430dd56749e356119671fe0cd2bf543e78d20c27af441d80951",
}


# ---------------------------------------------------------------------------------------------------
# Registry


def _hint(what: str, where: str) -> str:
    return f"Put {what} in DIR/{where} (or DIR/) and pass --data-dir DIR."


def load_cifar10(name: str, data_dir: Path | None, *, cache_dir: Path | None, hint: str, **jpeg_copy) -> Loaded:
    """The official python version where ``batches.meta`` is found (in ``cifar-10-batches-py/`` or the data folder),
    else the JPEG copy (``jpeg_copy``: its folder and checksums), as ``../shared/data`` holds it. A ``batches.meta``
    that is there but no file (a folder) is the python version's error, not a missing JPEG copy."""
    base = data_root(data_dir, dataset=name, hint=hint)
    if first_existing(base, [f"{CIFAR10_FOLDER}/batches.meta", "batches.meta"]).exists():
        return load_cifar10_python(name, data_dir, hint=hint)
    return load_jpeg_tarballs(name, data_dir, cache_dir=cache_dir, hint=hint, **jpeg_copy)


IMAGE_DATASETS: dict[str, ImageSpec] = {
    "mnist": ImageSpec(load_idx, {
        "folders": ("mnist", "."), "checksums": MNIST_SHA256,
        "hint": _hint("the four gzipped MNIST IDX files (train-images-idx3-ubyte.gz, ...)", "mnist/"),
    }),
    "idx": ImageSpec(load_idx, {
        "folders": (".",), "checksums": None,
        "hint": "Put the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in DIR and pass --data-dir DIR.",
    }),
    "digits": ImageSpec(load_digits, {"seed": DIGITS_SPLIT_SEED},
                        pixels="scikit-learn's load_digits counts 0..16, times 255 / 16, rounded half to even"),
    "cifar10": ImageSpec(load_cifar10, {
        "folder": "cifar10_jpg", "checksums": CIFAR10_JPG_SHA256,
        "hint": "Put the official CIFAR-10 python version (cifar-10-batches-py/ from cifar-10-python.tar.gz) in DIR, "
                "or the JPEG copy cifar10_jpg_train.tar.gz and cifar10_jpg_test.tar.gz in DIR/cifar10_jpg/, and "
                "pass --data-dir DIR.",
    }, augment="crop_flip", cached=True),
    "cifar100": ImageSpec(load_cifar100, {
        "hint": _hint("the official CIFAR-100 python version (train, test, meta from cifar-100-python.tar.gz)",
                      "cifar-100-python/"),
    }, augment="crop_flip"),
    "svhn": ImageSpec(load_svhn, {
        "hint": _hint("the official SVHN train_32x32.mat and test_32x32.mat", "svhn/"),
    }),
    "cinic10": ImageSpec(load_folders, {
        "folder": "cinic10", "splits": ("train", "test"), "image_size": None,
        "hint": _hint("the CINIC-10 folders train/<class>/*.png and test/<class>/*.png", "cinic10/"),
    }, augment="crop_flip", settable=("image_size",)),
    "tiny_imagenet": ImageSpec(load_tiny_imagenet, {
        "image_size": None,
        "hint": _hint("the unpacked tiny-imagenet-200 folder (wnids.txt, train/, val/)", "tiny-imagenet-200/"),
    }, settable=("image_size",)),
    "mnist_m": ImageSpec(load_mnist_m, {
        "hint": _hint("the unpacked MNIST-M folders mnist_m_train/, mnist_m_test/ and their *_labels.txt", "mnist_m/"),
    }),
    "pacs": ImageSpec(load_folders, {
        "folder": "pacs", "splits": ("train", "test"), "image_size": None,
        "hint": _hint("PACS images as train/<class>/* and test/<class>/* (domains arranged by you)", "pacs/"),
    }, settable=("image_size",)),
    "imagenet": ImageSpec(load_folders, {
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
        raise ConfigError(f"unknown image data set {name!r}; known: {', '.join(IMAGE_DATASETS)}")
    return spec.load(name, Path(data_dir) if data_dir is not None else None,
                     Path(cache_dir) if cache_dir is not None else None, options)
