"""CIFAR-100's official python version, read without ever running code from the file.

The files are pickles, and ``pickle.load`` runs whatever a crafted file names (``os.system``, say): a run folder
naming ``cifar100`` and a ``data_dir`` would be enough. ``_ArraysOnly`` admits only what the official files need.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .files import folder_root, require_file
from .image_formats import Loaded

__all__ = ["load_cifar100"]


# What a CIFAR-100 pickle may ask for: numpy's array reconstruction (numpy 1 and 2 names) and, in files written
# by Python 3 at protocol 2, bytes rebuilt by ``_codecs.encode``; nothing that can act on the system.
_CIFAR100_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                     ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds plain data and numpy arrays only: a crafted file cannot call anything else
    (``pickle.load`` would run whatever its ``__reduce__`` names, e.g. ``os.system``)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR100_GLOBALS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR-100 file never holds")
        return super().find_class(module, name)


def _unpickle_arrays(path: Path, *, dataset: str) -> dict:
    try:
        with open(path, "rb") as handle:
            content = _ArraysOnly(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{dataset}: {path} is not an official CIFAR-100 python file, refused: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{dataset}: {path} should hold a dict, got {type(content).__name__}")
    return content


def load_cifar100(name: str, data_dir: Path | None, *, hint: str) -> Loaded:
    """The official python version, read with an unpickler that only builds arrays (``_ArraysOnly``)."""
    root = folder_root(data_dir, "cifar-100-python", "meta", dataset=name, hint=hint)

    def unpickle(file: str, *keys: bytes) -> list:
        path = require_file(root / file, None, dataset=name, hint=hint)
        content = _unpickle_arrays(path, dataset=name)
        missing = [key.decode() for key in keys if key not in content]
        if missing:
            raise ValueError(f"{name}: {path} lacks {', '.join(missing)}")
        return [content[key] for key in keys]

    (names,) = unpickle("meta", b"fine_label_names")
    if not (isinstance(names, list) and all(isinstance(c, bytes) for c in names)):
        raise ValueError(f"{name}: {root / 'meta'}: fine_label_names should be a list of names")
    classes = [c.decode(errors="replace") for c in names]
    splits = []
    for file in ("train", "test"):
        data, labels = unpickle(file, b"data", b"fine_labels")
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and isinstance(labels, list)
                and all(type(label) is int for label in labels)):
            raise ValueError(f"{name}: {root / file} should hold uint8 pixels and a list of integer fine labels")
        data, labels = np.asarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise ValueError(f"{name}: {root / file} should hold N x 3072 pixels and N fine labels, got {data.shape}")
        splits.append((data.reshape(-1, 3, 32, 32), labels))
    return splits[0], splits[1], classes
