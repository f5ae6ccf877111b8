"""Fixtures shared by test modules, and one compute thread per process: on a loaded 2-core machine torch's two
threads per process mostly wait on each other (a compliance check took 192 s instead of 3), and a process the
tests start inherits the setting."""

import hashlib
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, here and in every child process

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def _snapshot(root: Path) -> dict[str, str | None]:
    """Every path under ``root``: sha256 for files, None for folders."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(Path(root).rglob("*"))}


@pytest.fixture
def snapshot():
    """``snapshot(root)``: what is on disk under ``root``, to show that a failed call wrote, changed or removed
    nothing."""
    return _snapshot


@pytest.fixture
def user_folder(tmp_path):
    """``user_folder(name)``: an empty folder under tmp_path, to give a run as its output folder in a test that the
    run is refused before any work. A run that fails after claiming a folder it created removes it, so a missing
    folder cannot tell the two apart; one given beforehand can: a late refusal leaves its lock there."""
    def make(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        return folder
    return make
