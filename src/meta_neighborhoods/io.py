"""Files the package writes and checks: output folders, atomic writes, JSON, checksums.

At the bottom of the import graph: every record and result is written through ``atomic_write``, so a crash never
leaves half of one behind (the per-epoch log ``metrics.csv`` is appended a row at a time, and TensorBoard writes its
own event files).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import reprlib
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .run_files import RUN_KINDS
from .signals import deferred_signals

MAX_RECORD_BYTES = 256 << 20  # a record's text: the largest, a split's image indices, takes 12 bytes an image
LOCK = ".lock"  # in a folder a run writes: see lock
STAGE = ".staged."  # a folder a run writes its files into before they take their places: see staged
RUN_MARKS = frozenset(mark for marks in RUN_KINDS.values() for mark in marks)  # of every kind: renamed, removed last


class RunFolderError(ValueError):
    """A run folder that is missing, damaged, foreign, busy, or not what the command needs."""


def refuse_other_runs(out: str | os.PathLike, kind: str) -> None:
    """Refuse a run of ``kind`` (a key of RUN_KINDS) in ``out`` where a run of another kind is."""
    for other, marks in RUN_KINDS.items():
        found = [name for name in marks if other != kind and (Path(out) / name).exists()]
        if found:
            raise RunFolderError(f"{out} holds a {other} run ({', '.join(found)}): a {kind} run would mix with it, "
                                 "--overwrite or not; choose another --out")


def refuse_strays(out: str | os.PathLike, found: list[str], kind: str, records: Iterable[str] = ()) -> None:
    """Refuse files named as a run of ``kind`` writes them (``found``, relative to ``out``) where nothing that shows
    such a run (its RUN_KINDS marks, or ``records``) lies beside them: a user's own ``summary.md``, not a run's,
    which --overwrite would remove."""
    shows = (*RUN_KINDS[kind], *records)
    strays = [name for name in found if not any((Path(out) / name).parent.joinpath(mark).exists() for mark in shows)]
    if strays:
        shown = ", ".join(strays[:4]) + (", ..." if len(strays) > 4 else "")
        raise RunFolderError(f"{out} holds {shown} beside no record of a {kind} run ({', '.join(shows)}): files a run "
                             "did not write are never replaced, --overwrite or not; move them or choose another --out")


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed and make sure we can write there, before any work is done."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"cannot write to output directory {out}: it is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise PermissionError(f"cannot write to output directory {out}: {error.strerror or error}") from error
    return out


def inner_folder(parent: str | os.PathLike, name: str) -> Path:
    """``parent/name``, a run's own folder inside ``parent`` (a data set's, a method's): never a link, through
    which a run would write, and an overwrite delete, outside the folder it was given."""
    folder = Path(parent) / name
    if folder.is_symlink():
        raise FileExistsError(f"{folder} is a link: the folders a run writes must lie inside {parent}; remove the "
                              "link")
    return folder


def refuse_held(out: str | os.PathLike, found: list[str], resume: bool = False) -> None:
    """Refuse a new run in ``out``, which holds ``found`` (an earlier run's files), in one line naming them and the
    ways on (``resume``: the command can also continue that run)."""
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        resume_it = f"continue it with --resume {out}, " if resume else ""
        raise FileExistsError(f"{out} already holds a run ({shown}): {resume_it}replace it with --overwrite, or "
                              "choose another --out")


@contextmanager
def lock(folder: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """Hold ``folder``'s exclusive lock for the block; a second writer fails at once, naming this process and its
    command line, where it would have replaced or removed what the first one wrote (or, if it ``wait``s, as the
    processes of one sweep that write a folder in turn, takes the lock when it is free).

    An advisory ``fcntl`` lock on ``folder/.lock``: the system releases it when the holder exits, however it
    ends (SIGKILL included), so a killed run never leaves its folder locked.
    """
    path = Path(folder) / LOCK
    try:  # never through a link, never anything but a regular file: the lock's text replaces what it holds
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):  # the folder, not the file
            raise RunFolderError(f"cannot write in {folder} ({error.strerror})") from None
        raise RunFolderError(f"{path} cannot be the run's lock file ({error.strerror}): remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunFolderError(f"{path} is not a regular file, so it cannot be the run's lock file: remove it")
    with os.fdopen(fd, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise _busy(folder, handle) from None
        handle.truncate()
        handle.write(f"process {os.getpid()} ({' '.join(sys.argv)[:200]})")
        handle.flush()
        yield


def _busy(folder, handle) -> RunFolderError:
    """Why ``folder``'s lock (open as ``handle``) cannot be taken: a writer holds it (named by what it wrote there),
    or only readers (``reading``), whose shared hold another reader could join."""
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _written(folder, handle)
    fcntl.flock(handle, fcntl.LOCK_UN)
    return RunFolderError(f"{folder} is being read by another process (analyze or export); wait for it to end")


@contextmanager
def reading(folder: str | os.PathLike) -> Iterator[None]:
    """``folder`` read under a shared hold of its lock: a run still writing it (a classify run training) is named and
    refused, and none starts before the block ends. A folder whose lock file cannot be opened (none, or read-only)
    is read as it is: no run of ours writes there."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:  # a link: a run's lock is never one, and the link's target may be held
            raise RunFolderError(f"{Path(folder) / LOCK} is a link, not a run's lock: {folder} is not read") from None
        yield
        return
    with os.fdopen(fd) as handle:
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _written(folder, handle) from None
        yield


def _written(folder, handle) -> RunFolderError:
    """A refusal of ``folder``, which a run writes: named by the text it wrote in the lock file (``handle``)."""
    holder = handle.read(300).strip() or "another process"  # ours is ~230 characters; a folder's may be any size
    return RunFolderError(f"{folder} is being written by {holder}; wait for it to end or choose another folder")


@contextmanager
def claimed(out: str | os.PathLike, outputs: Iterable[str], overwrite: bool, kind: str,
            records: Iterable[str] = (), replaces: Iterable[str] = ()) -> Iterator[Path]:
    """A folder where a new run of ``kind`` writes the files ``outputs`` (paths relative to ``out``), moved into
    ``out`` when the block ends (``staged``), ``out`` locked meanwhile. A folder that holds a run of another kind is
    refused, one that holds any of ``outputs`` (an earlier run's results) too unless ``overwrite`` (they then make
    way for the new run's files, with ``replaces``, other files of an earlier run), and one where a folder has an
    output's name, all before any work; a second run into ``out`` fails at once.
    Files of ``outputs`` beside nothing that shows a run (``refuse_strays``; ``records``: the kind's own) are
    refused either way."""
    outputs = list(outputs)
    _claimable(Path(out), outputs, overwrite, kind, records)  # before anything is made: a refusal changes nothing
    created = [folder for folder in (Path(out), *Path(out).parents) if not folder.exists()]
    out = prepare_out_dir(out)
    try:
        with lock(out):
            found = _claimable(out, outputs, overwrite, kind, records)  # again: a run that ended before the lock
            with staged(out, [*found, *replaces]) as stage:
                yield stage
    except BaseException:
        remove_created(created)
        raise


def _claimable(out: Path, outputs: list[str], overwrite: bool, kind: str, records: Iterable[str]) -> list[str]:
    """The ``outputs`` found in ``out``, where ``claimed`` may write them; otherwise a refusal naming them."""
    refuse_other_runs(out, kind)
    found = [name for name in outputs if (out / name).exists()]
    refuse_strays(out, found, kind, records)
    if not overwrite:
        refuse_held(out, found)
    for name in found:  # a folder where the run writes a file: refused now, not after the work
        replaceable(out / name)
    return found


@contextmanager
def staged(out: Path, replaces: Iterable[str] = ()) -> Iterator[Path]:
    """A hidden folder in ``out`` (whose lock the caller holds) where a run writes its files, moved to the same
    places in ``out`` when the block ends, where an earlier run's ``replaces`` make way for them: renames of a few
    milliseconds, with Ctrl-C and SIGTERM held, where writing took seconds (a figure per table). So a run that fails
    or is stopped while it writes leaves the earlier one whole, never some files of each. A block that raises leaves
    ``out`` as it was; a stage a killed run left is removed."""
    remove_stale_stages(out)
    stage = None
    try:
        with deferred_signals():  # made and known at once: a stop between the two left it (a clean clone's CI)
            stage = Path(tempfile.mkdtemp(dir=out, prefix=STAGE))
        try:
            yield stage
        except OSError as error:
            raise _at_destination(error, stage, out) from None
        with deferred_signals():
            moved = _move(stage, out)
            remove_outputs(out, [name for name in replaces if name not in moved])
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _at_destination(error: OSError, stage: Path, out: Path) -> OSError:
    """``error`` naming, for a file in ``stage``, its place in ``out``: a full disk's message named a hidden folder the
    user never sees, and which is gone by the time they read it."""
    name = error.filename
    if not isinstance(name, str) or not Path(name).is_relative_to(stage):
        return error
    return OSError(error.errno, error.strerror, str(out / Path(name).relative_to(stage)))


def remove_stale_stages(folder: Path) -> None:
    """The stages (``staged``) a killed run left in ``folder``, whose lock the caller holds: nobody else writes
    there."""
    for stale in folder.glob(STAGE + "*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)


def _move(stage: Path, out: Path) -> set[str]:
    """``stage``'s files renamed over their places in ``out`` (never removed first: a run killed among the renames
    leaves each place holding one run's file), the records that show a run (RUN_KINDS) last; their relative paths."""
    moved = set()
    for path in sorted((path for path in stage.rglob("*") if path.is_file()), key=lambda path: path.name in RUN_MARKS):
        name = path.relative_to(stage).as_posix()
        target = replaceable(out / name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved.add(name)
    return moved


def remove_created(folders: list[Path]) -> None:
    """A failed run's ``folders`` (those it created, innermost first) removed where they hold only its lock: the
    user finds no empty run folder. Only empty folders go (``rmdir``), so a file written meanwhile stays."""
    if folders and [entry.name for entry in folders[0].iterdir()] == [LOCK]:
        (folders[0] / LOCK).unlink()
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def remove_outputs(out: str | os.PathLike, outputs: Iterable[str]) -> None:
    """The ``outputs`` an earlier run left in ``out`` (a run asked to overwrite it), removed where the new run's files
    take their places (``staged``): never a mix of two runs (an animation the new run does not make, an ablation
    where a regress run now is). Files and links only, never a folder of such a name. The records that show a run
    (RUN_KINDS) go last."""
    for name in sorted(outputs, key=lambda name: Path(name).name in RUN_MARKS):
        path = Path(out) / name
        if path.is_file() or path.is_symlink():
            path.unlink()


def replaceable(path: str | os.PathLike) -> Path:
    """``path``, refused when what is there is neither a regular file nor a link (a folder, a device such as
    /dev/null, a pipe): nothing we wrote, so nothing we may replace."""
    path = Path(path)
    if not path.is_symlink() and path.exists() and not path.is_file():
        raise FileExistsError(f"{path} exists and is not a regular file: refused, choose another path")
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], replace: bool = True) -> Path:
    """Call ``write(temporary_path)``, then rename the result onto ``path``: a crash never leaves half a file.

    The temporary file lies beside ``path`` (same file system, so the rename is atomic); ``path``'s folder is
    created if needed. A link at ``path`` is replaced, never written through (see ``replaceable``); with
    ``replace=False`` nothing at ``path`` is (``move_into_place``).
    """
    path = replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:  # a folder that takes no file (/proc): said of the path asked for, not the stage's
        raise OSError(error.errno, error.strerror, str(path)) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private (and writers may recreate them); results are shared
        move_into_place(tmp, path, replace)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None and error.filename in (None, tmp):  # a full disk's
            raise OSError(error.errno, error.strerror, str(path)) from None  # "[Errno 28] ...", of no file
        raise
    return path


def move_into_place(source: str | os.PathLike, path: Path, replace: bool = True) -> None:
    """Rename ``source`` to ``path``; with ``replace=False`` only where nothing is there when it lands, not merely
    when the command began (a file written meanwhile, by the user or a second run into the same ``--out``): a hard
    link claims the name atomically. Where the file system has no hard links, it is checked just before."""
    if replace:
        return os.replace(source, path)
    try:
        os.link(source, path)
    except FileExistsError:
        pass
    except OSError:  # no hard links here (some network and FAT file systems)
        if not os.path.lexists(path):
            return os.replace(source, path)
    else:
        return os.unlink(source)  # the name is claimed: an error removing the source is not "written meanwhile"
    raise FileExistsError(f"{path} was written by something else while this ran: replace it with --overwrite, or "
                          "choose another --out")


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write JSON atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_record(path: str | os.PathLike, limit: int = MAX_RECORD_BYTES):
    """A JSON record the package wrote (a manifest, a run's configuration), parsed: refused, as a ValueError naming
    the file, above ``limit`` bytes, so that a crafted file (a sparse gigabyte) is never read whole."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit >> 20} MiB, far more than any record this package writes")
    return parse_json(data.decode("utf-8"))


def parse_json(text: str | bytes):
    """JSON as the package reads every file: an object that names a key twice is refused (``once_each``)."""
    return json.loads(text, object_pairs_hook=once_each)


def once_each(pairs: list) -> dict:
    """A mapping whose keys are each given once: of a key given twice, the last would win without a word."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"key {reprlib.repr(key)} is given twice")
        seen.add(key)
    return dict(pairs)


def read_json_object(path: Path) -> dict:
    """A JSON object from a record in a folder given to us (untrusted), or a RunFolderError naming the file."""
    if path.is_symlink() or not path.is_file():
        raise RunFolderError(f"{path} is missing (or not a regular file)")
    try:
        content = read_record(path)
    except (ValueError, RecursionError) as error:  # too large, not UTF-8, not JSON
        raise RunFolderError(f"{path} is not readable JSON ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict):
        raise RunFolderError(f"{path} should hold a JSON object, got {type(content).__name__}")
    return content


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
