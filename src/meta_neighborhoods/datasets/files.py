"""Local data files: find them, check their sha256, and say clearly what to do when they are missing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class DataFileError(FileNotFoundError):
    """A data file is missing or is not the file we expect (wrong checksum)."""


def shared_data_dir() -> Path | None:
    """The repository's ``../shared/data`` (or ``$META_NEIGHBORHOODS_DATA``) when it exists, else None."""
    env = os.environ.get("META_NEIGHBORHOODS_DATA")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[3]  # src/meta_neighborhoods/datasets/files.py
    candidate = repo_root.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require_file(path: Path, expected_sha256: str | None, *, dataset: str, hint: str) -> Path:
    """Return ``path`` if it exists and matches ``expected_sha256``; otherwise raise DataFileError.

    ``hint`` tells the user where the file comes from or which ``--data-dir`` to pass.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{dataset}: missing data file {path}. {hint}")
    if expected_sha256 is not None:
        actual = sha256(path)
        if actual != expected_sha256:
            raise DataFileError(
                f"{dataset}: {path} has sha256 {actual}, expected {expected_sha256}; "
                f"the file is corrupt or a different version. {hint}"
            )
    return path
