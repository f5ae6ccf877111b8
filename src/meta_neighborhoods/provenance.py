"""What produced a result: package and library versions, the platform, the git commit, the command line.

Every run folder records ``provenance()`` beside its configuration, so a number can be traced to the code and
the libraries that computed it (as scikit-learn's ``show_versions`` or a Lightning run's hparams do).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .launch import called_arguments, launched_by_torchrun

GIT_TIMEOUT = 5.0  # seconds; a hung git (a network file system, a lock) must not hold up a run
# what else computes results (folds, baselines, tables, tests; the optional baselines' where installed)
LIBRARIES = ("scikit-learn", "scipy", "pandas", "lightgbm", "pytabkit")


def _git(*args: str) -> str | None:
    """Output of a read-only git command run in the package's folder, or None (no git, not a clone, timeout).

    ``GIT_OPTIONAL_LOCKS=0``: ``git status`` then never rewrites the index, so recording leaves the clone as it was.
    """
    try:
        done = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state() -> tuple[str | None, bool | None]:
    """(commit, whether tracked files differ from it) when this package is imported from a git clone that tracks
    its files (a virtual environment inside some other clone does not count), else (None, None)."""
    if _git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None, None
    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
    return commit or None, None if not commit or status is None else bool(status)


@functools.cache
def source_sha256(root: Path = Path(__file__).resolve().parent) -> str:
    """A digest of the package's own source files (under ``root``), which names the code that ran where git cannot
    (an installed copy, an edited tree): the version number stays the same across changes of the defaults."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def command() -> list[str]:
    """The command line as it can be run again: ``launcher()`` and the arguments, ``sys.argv``'s or those a program
    gave ``cli.main`` (``launch.called_with``)."""
    called = called_arguments()
    return [*launcher(), *(sys.argv[1:] if called is None else called)]


def launcher() -> list[str]:
    """What starts the command line as it ran: ``sys.argv[0]``, but ``python -m meta_neighborhoods`` where the
    package ran as a module (its ``sys.argv[0]`` is ``__main__.py``, which cannot run by itself) or a program called
    ``cli.main``, and under torchrun its launch with as many nodes and processes per node (run by one process, it
    trained otherwise; a run on several nodes also needs their rendezvous, which torchrun's options give)."""
    module = called_arguments() is not None or bool(sys.argv) and Path(sys.argv[0]).resolve() == Path(
        __file__).resolve().with_name("__main__.py")
    own = ["-m", "meta_neighborhoods"] if module else sys.argv[:1]
    if not launched_by_torchrun():
        return [sys.executable, *own] if module else own
    world, local = (int(os.environ.get(name, "1")) for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"))
    return ["torchrun", f"--nnodes={max(1, world // max(local, 1))}", f"--nproc-per-node={local}", *own]


def provenance() -> dict:
    """A JSON-able record of what is running now: versions, platform, torch's CPU threads (training with
    neighbours sums in an order that depends on them, so a rerun matches only on as many), the GPU a device of
    "auto" takes (None: the CPU), git commit and whether the clone had uncommitted changes (both None outside a
    clone), a digest of the package's source (``source_sha256``), the command line (``command``) and the folder its
    relative paths start from, and the time."""
    commit, dirty = git_state()
    return {
        "meta_neighborhoods": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        **{name: _version(name) for name in LIBRARIES},
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,  # what device "auto" takes
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "git_commit": commit,
        "git_dirty": dirty,
        "source_sha256": source_sha256(),
        "command": command(),
        "working_directory": os.getcwd(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
