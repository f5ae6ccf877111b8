"""CIFAR-10's and CIFAR-100's official python versions, read without ever running code from the files.

The files are pickles, and ``pickle.load`` runs whatever a crafted file names (``os.system``, say): a run folder
naming the data set and a ``data_dir`` would be enough. ``_ArraysOnly`` admits only what the official files need.
"""

from __future__ import annotations

import codecs
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np

from ..validation import shown
from .files import folder_root, require_file
from .image_formats import Loaded

__all__ = ["CIFAR10_FOLDER", "load_cifar10_python", "load_cifar100"]

CIFAR10_FOLDER, CIFAR10_META = "cifar-10-batches-py", "batches.meta"  # as cifar-10-python.tar.gz unpacks
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

# A pickle's arrays, bounded by what the largest official file holds: CIFAR-10's batches 10,000 images of 3,072
# bytes each, CIFAR-100's train file 50,000. A file may be twice its pixels' bytes (Python 3 writes bytes at protocol
# 2 as a latin-1 text, two bytes per byte over 127) plus its labels and names; a larger one is refused unread.
CIFAR10_ROWS, CIFAR100_TRAIN_ROWS = 10_000, 50_000  # images per file
IMAGE_BYTES, NAMES_BYTES = 3072, 1 << 20
# An official file takes about four pickle opcodes an image (its name, its labels, the lists' marks), one written
# again by Python 3 at protocol 2 about ten; a crafted one of an opcode a byte (``]``, an empty list each) would have
# the unpickler build ~70 bytes of objects per byte of file. Counting them costs about 2 us an opcode.
OPCODES_PER_ROW, OPCODES_MORE = 16, 4096
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}  # numpy 1, 2


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds plain data and uint8 arrays of at most ``max_bytes`` only: a crafted file cannot call
    anything else (``pickle.load`` would run whatever its ``__reduce__`` names, e.g. ``os.system``), nor declare an
    array larger than an official file holds (numpy would allocate it before a check could see it)."""

    def __init__(self, handle, max_bytes: int):
        super().__init__(handle, encoding="bytes")
        self.max_bytes = max_bytes

    def find_class(self, module: str, name: str):
        allowed = {("numpy", "ndarray"): _ndarray, ("numpy", "dtype"): _uint8, ("_codecs", "encode"): _latin1,
                   **{key: self._reconstruct for key in _RECONSTRUCT}}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR file never holds")
        return allowed[module, name]

    def persistent_load(self, pid):
        """Python's own refusal spans two lines; errors here are one."""
        raise pickle.UnpicklingError("it holds a persistent id, which a CIFAR file never holds")

    def _reconstruct(self, subtype, shape, dtype) -> np.ndarray:
        """numpy's ``_reconstruct``, of uint8 whatever ``dtype`` says (a wide one would multiply the bytes);
        ``__setstate__`` then fills it from bytes the file holds."""
        sizes = shape if isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape) else None
        if subtype is not _ndarray or sizes is None or math.prod(sizes) > self.max_bytes:
            raise pickle.UnpicklingError(f"it declares an array of shape {shown(shape)}; an official file "
                                         f"holds at most {self.max_bytes} bytes there")
        return np.ndarray(sizes, np.uint8)


def _ndarray(*args):
    """What ``numpy.ndarray`` unpickles to: ``_reconstruct`` takes it, a call (which would allocate) is refused."""
    raise pickle.UnpicklingError("it calls numpy.ndarray, which a CIFAR file never does")


def _uint8(name, align=False, copy=True) -> np.dtype:
    if name not in ("u1", b"u1"):  # bytes in the official files, written by Python 2
        raise pickle.UnpicklingError(f"it asks for an array of {shown(name)}, a CIFAR file holds uint8 only")
    return np.dtype(name, align, copy)


def _latin1(text, encoding) -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"it encodes a {type(text).__name__} as {shown(encoding)}, not as latin1")
    return codecs.encode(text, "latin1")


def _entries(path: Path, keys: tuple[bytes, ...], rows: int, *, dataset: str, hint: str) -> list:
    """The entries ``keys`` of the dict of one official file of at most ``rows`` images, read with ``_ArraysOnly``."""
    path = require_file(path, None, dataset=dataset, hint=hint, within=path.parent)
    limit = 2 * rows * IMAGE_BYTES + NAMES_BYTES
    if path.stat().st_size > limit:
        raise ValueError(f"{dataset}: {path} holds {path.stat().st_size} bytes, more than an official CIFAR file of "
                         f"{rows} images could ({limit}); refused unread")
    try:
        with open(path, "rb") as handle:
            _count_opcodes(handle, OPCODES_PER_ROW * rows + OPCODES_MORE)
            content = _ArraysOnly(handle, rows * IMAGE_BYTES).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{dataset}: {path} is not an official CIFAR python file, refused: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{dataset}: {path} should hold a dict, got {type(content).__name__}")
    missing = [key.decode() for key in keys if key not in content]
    if missing:
        raise ValueError(f"{dataset}: {path} lacks {', '.join(missing)}")
    return [content[key] for key in keys]


def _count_opcodes(handle, most: int) -> None:
    """Refuses a pickle of more than ``most`` opcodes before anything is built (the scan holds one at a time), then
    rewinds: the objects an unpickler builds are bounded by its opcodes, their bytes by the file's size."""
    for count, _ in enumerate(pickletools.genops(handle), start=1):
        if count > most:
            raise pickle.UnpicklingError(f"it holds more than {most} pickle opcodes, more than an official file")
    handle.seek(0)


def _names(path: Path, key: bytes, *, dataset: str, hint: str) -> list[str]:
    (names,) = _entries(path, (key,), 0, dataset=dataset, hint=hint)
    if not (isinstance(names, list) and all(isinstance(c, bytes) for c in names)):
        raise ValueError(f"{dataset}: {path}: {key.decode()} should be a list of names")
    if not names:  # else refused as "train labels fall outside 0..-1", the file unnamed
        raise ValueError(f"{dataset}: {path}: {key.decode()} lists no classes")
    return [c.decode(errors="replace") for c in names]


def _images(paths: list[Path], label_key: bytes, rows: int, *, dataset: str, hint: str) -> tuple[np.ndarray, ...]:
    """The (N, 3, 32, 32) pixels and labels of one split, which may span several files of at most ``rows`` images."""
    images, labels = [], []
    for path in paths:
        data, named = _entries(path, (b"data", label_key), rows, dataset=dataset, hint=hint)
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and isinstance(named, list)
                and all(type(label) is int for label in named)):
            raise ValueError(f"{dataset}: {path} should hold uint8 pixels and a list of integer labels")
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(named):
            raise ValueError(f"{dataset}: {path} should hold N x 3072 pixels and N labels, got {data.shape}")
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(named, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def load_cifar10_python(name: str, data_dir: Path | None, *, hint: str) -> Loaded:
    """The official python version: five training batches, the test batch and the class names."""
    root = folder_root(data_dir, CIFAR10_FOLDER, CIFAR10_META, dataset=name, hint=hint)
    classes = _names(root / CIFAR10_META, b"label_names", dataset=name, hint=hint)
    train = _images([root / file for file in CIFAR10_TRAIN], b"labels", CIFAR10_ROWS, dataset=name, hint=hint)
    return train, _images([root / "test_batch"], b"labels", CIFAR10_ROWS, dataset=name, hint=hint), classes


def load_cifar100(name: str, data_dir: Path | None, *, hint: str) -> Loaded:
    """The official python version; fine labels."""
    root = folder_root(data_dir, "cifar-100-python", "meta", dataset=name, hint=hint)
    classes = _names(root / "meta", b"fine_label_names", dataset=name, hint=hint)
    train, test = (_images([root / file], b"fine_labels", rows, dataset=name, hint=hint)
                   for file, rows in (("train", CIFAR100_TRAIN_ROWS), ("test", CIFAR10_ROWS)))
    return train, test, classes
