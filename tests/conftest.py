"""Fixtures shared by test modules."""

import hashlib
from pathlib import Path

import pytest


def _snapshot(root: Path) -> dict[str, str | None]:
    """Every path under ``root``: sha256 for files, None for folders."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(Path(root).rglob("*"))}


@pytest.fixture
def snapshot():
    """``snapshot(root)``: what is on disk under ``root``, to show that a failed call wrote, changed or removed
    nothing."""
    return _snapshot
