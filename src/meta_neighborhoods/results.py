"""Run folders: created up front with a clear error, files written atomically so nothing half-written survives."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed and make sure we can write there, before any work is done."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise PermissionError(f"cannot write to output directory {out}: {error.strerror or error}") from error
    return out


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write JSON through a temporary file and a rename, so a crash never leaves a truncated file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=2, sort_keys=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
