"""CIFAR-10's and CIFAR-100's official python versions, read without ever running code from the files.

The files are pickles, and ``pickle.load`` runs whatever a crafted file names (``os.system``, say): a run folder
naming the data set and a ``data_dir`` would be enough. ``_ArraysOnly`` admits only what the official files need.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .files import folder_root, require_file
from .image_formats import Loaded

__all__ = ["CIFAR10_FOLDER", "load_cifar10_python", "load_cifar100"]

CIFAR10_FOLDER, CIFAR10_META = "cifar-10-batches-py", "batches.meta"  # as cifar-10-python.tar.gz unpacks
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))

# What a CIFAR pickle may ask for: numpy's array reconstruction (numpy 1 and 2 names) and, in files written
# by Python 3 at protocol 2, bytes rebuilt by ``_codecs.encode``; nothing that can act on the system.
_CIFAR_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds plain data and numpy arrays only: a crafted file cannot call anything else
    (``pickle.load`` would run whatever its ``__reduce__`` names, e.g. ``os.system``)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR file never holds")
        return super().find_class(module, name)


def _entries(path: Path, keys: tuple[bytes, ...], *, dataset: str, hint: str) -> list:
    """The entries ``keys`` of the dict one official file holds, read with ``_ArraysOnly``."""
    path = require_file(path, None, dataset=dataset, hint=hint, within=path.parent)
    try:
        with open(path, "rb") as handle:
            content = _ArraysOnly(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{dataset}: {path} is not an official CIFAR python file, refused: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{dataset}: {path} should hold a dict, got {type(content).__name__}")
    missing = [key.decode() for key in keys if key not in content]
    if missing:
        raise ValueError(f"{dataset}: {path} lacks {', '.join(missing)}")
    return [content[key] for key in keys]


def _names(path: Path, key: bytes, *, dataset: str, hint: str) -> list[str]:
    (names,) = _entries(path, (key,), dataset=dataset, hint=hint)
    if not (isinstance(names, list) and all(isinstance(c, bytes) for c in names)):
        raise ValueError(f"{dataset}: {path}: {key.decode()} should be a list of names")
    return [c.decode(errors="replace") for c in names]


def _images(paths: list[Path], label_key: bytes, *, dataset: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 3, 32, 32) pixels and labels of one split, which may span several files."""
    images, labels = [], []
    for path in paths:
        data, named = _entries(path, (b"data", label_key), dataset=dataset, hint=hint)
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
    train = _images([root / file for file in CIFAR10_TRAIN], b"labels", dataset=name, hint=hint)
    return train, _images([root / "test_batch"], b"labels", dataset=name, hint=hint), classes


def load_cifar100(name: str, data_dir: Path | None, *, hint: str) -> Loaded:
    """The official python version; fine labels."""
    root = folder_root(data_dir, "cifar-100-python", "meta", dataset=name, hint=hint)
    classes = _names(root / "meta", b"fine_label_names", dataset=name, hint=hint)
    train, test = (_images([root / file], b"fine_labels", dataset=name, hint=hint) for file in ("train", "test"))
    return train, test, classes
