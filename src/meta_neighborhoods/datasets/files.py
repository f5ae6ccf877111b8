"""Local data files: find them, check their sha256, and say clearly what to do when they are missing."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ..io import sha256
from ..launch import torchrun_rank

LOGGER = logging.getLogger(__name__)


class DataFileError(FileNotFoundError):
    """A data file is missing or is not the file we expect (wrong checksum)."""


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp"}


def shared_data_dir() -> Path | None:
    """The repository's ``../shared/data`` (or ``$META_NEIGHBORHOODS_DATA``) when it exists, else None."""
    env = os.environ.get("META_NEIGHBORHOODS_DATA")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[3]  # src/meta_neighborhoods/datasets/files.py
    candidate = repo_root.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def data_root(data_dir: Path | str | None, *, dataset: str, hint: str) -> Path:
    """``data_dir``, else ``shared_data_dir()``; one message for "no data folder at all", whichever loader asks."""
    base = data_dir if data_dir is not None else shared_data_dir()
    if base is None:
        raise DataFileError(
            f"{dataset}: no data directory was given and ../shared/data does not exist "
            f"($META_NEIGHBORHOODS_DATA is unset). {hint}"
        )
    return Path(base)


def first_existing(base: Path, candidates: list[str]) -> Path:
    """The first ``base / candidate`` (file or folder) that exists, else the first one, so that the error names it."""
    paths = [base / c for c in candidates]
    return next((p for p in paths if p.exists()), paths[0])


def folder_root(data_dir: Path | None, folder: str, marker: str, *, dataset: str, hint: str) -> Path:
    """``<data_dir>/<folder>`` if it holds ``marker``, else ``<data_dir>`` if that does; otherwise DataFileError.
    A ``<folder>`` that leads outside the data folder (a link) is refused, as ``require_file`` refuses a file."""
    base = data_root(data_dir, dataset=dataset, hint=hint)
    found = first_existing(base, [f"{folder}/{marker}", marker])
    if not found.exists():
        raise DataFileError(f"{dataset}: missing {found} (also looked for {base / marker}). {hint}")
    _inside(found, base, dataset)
    return found.parent


def require_file(path: Path, expected_sha256: str | None, *, dataset: str, hint: str, within: Path | None) -> Path:
    """Return ``path`` if it exists and matches ``expected_sha256``; otherwise raise DataFileError.

    A file found in a data folder (``within``) is read only if it lies there, not through a link that could lead
    anywhere on the machine (the data folder itself may be a link: the user chose it); ``within=None``: a file the
    user named. ``hint`` tells the user where the file comes from or which ``--data-dir`` to pass.
    """
    path = Path(path)
    if within is not None:
        _inside(path, within, dataset)
    if path.exists() and not path.is_file():
        raise DataFileError(f"{dataset}: {path} is not a regular file (a folder, a pipe or a device). {hint}")
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


def read_text(path: Path, *, dataset: str, hint: str, within: Path) -> str:
    """A data set's text file (a class or label list) inside ``within``; one that is not UTF-8 is refused naming it. A
    byte-order mark, which editors on Windows write, is dropped (it would be read as part of the first name)."""
    path = require_file(path, None, dataset=dataset, hint=hint, within=within)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{dataset}: {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def listed_file(folder: Path, name: str, listing: Path, *, within: Path, dataset: str) -> Path:
    """``folder / name`` for an image a label list names, refused unless it is a file inside ``folder``, itself inside
    the data set's folder ``within`` (not through a link)."""
    path = folder / name
    if (path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()) or Path(name).is_absolute()
            or not folder.resolve().is_relative_to(within.resolve())
            or path.exists() and not path.is_file()):  # a FIFO would block the read forever
        raise ValueError(f"{dataset}: {listing} names {name!r}, which is not a file inside {folder}: refused")
    return path


def listed_images(listing: Path, folder: Path, root: Path, sep: str | None, classes: list[str], *, dataset: str,
                  hint: str) -> list[tuple[str, str, Path]]:
    """(label, where, path) of the images in ``folder`` that a label list names, a line ``name label`` each (``sep``:
    ``None`` for any white space and those two fields only, mnist_m's; a tab for Tiny ImageNet's, whose lines go on
    with a box). A label not among ``classes``, or an image named twice (which would count it twice, or under two
    labels), is refused, naming the line."""
    entries, form, seen = [], "name label" if sep is None else "name<tab>label<tab>...", {}
    for lineno, line in enumerate(read_text(listing, dataset=dataset, hint=hint, within=root).splitlines(), start=1):
        fields = line.split(sep)
        if len(fields) < 2 or sep is None and len(fields) > 2:
            if line.strip():
                raise ValueError(f"{dataset}: {listing} line {lineno} should be '{form}', got {line!r}")
            continue
        if fields[1] not in classes:
            shown = ", ".join(classes[:5]) + ", ..." * (len(classes) > 5)
            raise ValueError(f"{dataset}: {listing} line {lineno} labels {fields[0]!r} {fields[1]!r}, which is not "
                             f"among the {len(classes)} classes ({shown})")
        path = listed_file(folder, fields[0], listing, within=root, dataset=dataset)
        same = path.resolve()  # by the file: ./0.png is 0.png
        if same in seen:
            raise ValueError(f"{dataset}: {listing} names {fields[0]!r} on line {lineno}, an image line "
                             f"{seen[same]} names already: an image is listed once")
        seen[same] = lineno
        entries.append((fields[1], str(path), path))
    if not entries:  # else "no images found", the file unnamed
        raise DataFileError(f"{dataset}: {listing} lists no images")
    return entries


def folder_images(root: Path, *, dataset: str) -> list[tuple[str, Path]]:
    """``(class, path)`` of each entry named like an image in an ImageFolder tree ``root/<class>/**``; other files
    (e.g. Tiny ImageNet's boxes.txt) are skipped. A link is refused (it may lead anywhere on the machine), and so is an
    entry named like an image that is no regular file: skipped, the set would silently miss an image."""
    folders = [folder for folder in root.iterdir() if folder.is_dir()]
    paths = [(folder, path) for folder in folders for path in [folder, *folder.rglob("*")]]
    linked = [path for _, path in paths if path.is_symlink()]
    if linked:
        raise ValueError(f"{dataset}: {linked[0]} is a symbolic link; image folders must hold the images themselves")
    images = [(folder.name, path) for folder, path in paths if path != folder and path.suffix.lower() in IMAGE_SUFFIXES]
    odd = next((path for _, path in images if not path.is_file()), None)
    if odd is not None:  # a FIFO would also block the read forever
        raise DataFileError(f"{dataset}: {odd} is {_kind(odd)}, not an image file; an image folder holds regular files")
    _say_left_out(root, [path for _, path in paths if path.suffix.lower() not in IMAGE_SUFFIXES and path.is_file()],
                  sorted({folder.name for folder in folders} - {name for name, _ in images}))
    return images


def _say_left_out(root: Path, others: list[Path], empty: list[str]) -> None:
    """Say which files of an image tree are no image and which class folders hold none, for a user who misfiled
    images: a class missing here may be refused later, in the other split."""
    said = ([f"{len(others)} file(s) not named as images ({others[0].relative_to(root)}"
             f"{', ...' if len(others) > 1 else ''})"] if others else []) + \
        ([f"{len(empty)} folder(s) without images, which are no class: {', '.join(empty[:5])}"] if empty else [])
    if said and torchrun_rank() == 0:  # once, not once a process
        LOGGER.info("%s: left out %s", root, "; ".join(said))


def _kind(path: Path) -> str:
    mode = path.lstat().st_mode
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a device", stat.S_ISBLK: "a device"}
    return next((name for is_kind, name in kinds.items() if is_kind(mode)), "not a regular file")


def _inside(path: Path, folder: Path, dataset: str) -> None:
    if path.exists() and not path.resolve().is_relative_to(Path(folder).resolve()):
        raise DataFileError(f"{dataset}: {path} leads outside the data folder {folder} (a symbolic link); a data "
                            "folder must hold its files themselves")
