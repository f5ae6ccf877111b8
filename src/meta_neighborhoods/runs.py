"""Run folders of ``classify``: their layout, who may write them, and what each records (the network a run holds
and its checkpoint ``best`` are ``image_methods.py``'s; ``runs.load_best_model`` finds it in a folder).

One method's run folder::

    config.json        the run's configuration, written before training
    run.json           provenance (versions, git commit, command line), seeds, the inputs and classes the network
                       expects (``run_record.py``)
    split.json         which images of the data set's train split it trained and validated on (indices), and the
                       per-channel mean and std its inputs were normalised with
    best.json + best.<token>.safetensors   checkpoint ``best``: the best-on-validation weights and ``model_args``
    last.json + last.<token>.safetensors   checkpoint ``last``: the whole training state after the latest epoch
    metrics.csv        a row per epoch (losses, validation accuracy, learning rate, seconds), as training goes
    tensorboard/       the same as TensorBoard event files, when TensorBoard is installed
    metrics.json       test accuracy, history and configuration, written at the end

With ``--method all`` the parent folder holds one such folder per method, plus ``config.json``,
``comparison.json`` and ``comparison.md``. ``classify`` writes run folders; ``analyze`` and ``export`` read them
through this module (with ``image_methods.py`` for checkpoint ``best`` and ``run_record.py`` for ``run.json``), so
they see exactly what the run trained on.

A run folder is untrusted input. Every field read from it is checked (type, range, allowed names) before
anything is loaded or built, and paths are never taken from it: on ``--resume`` and in ``analyze`` the data and
cache folders come from the command line or the defaults, so a crafted folder cannot make us read or write
elsewhere. While a run writes a folder it holds an exclusive lock on ``.lock`` there (``lock``); a new run refuses
a folder that already holds a run unless asked to ``overwrite`` it (``claim``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from . import checkpoint
from .checkpoint import CheckpointError
from .backbones import available_backbones
from .config import ADDED_SINCE, PATH_FIELDS, RUN_DEFAULTS, ClassificationConfig
from .datasets.images import available_image_datasets
from .image_methods import METHOD_NAMES, METHODS, load_checkpoint
from .io import (RunFolderError, lock as folder_lock, read_json_object, refuse_held, refuse_other_runs, remove_created,
                 sha256, write_json)
from .model import MetaNeighborhoods
from .run_files import BEST, COMPARISON, CONFIG, LAST, METRICS, METRICS_CSV, SPLIT, TENSORBOARD, analyses_in
from .run_record import RUN
from .validation import ConfigError, is_finite, shown

METHOD_SETTINGS = "meta_neighborhoods"  # the key of config.json that holds the fixed settings of the neighbours
RECORDED_BESIDE = frozenset({  # what config.json holds beside ClassificationConfig (classification._run_config)
    "model", METHOD_SETTINGS, "ifilm_where", "maxl", "optimizer", "grad_clip_value", "validation_fraction",
    "validation_max", "milestones", "version"})


def run_folder(run_dir) -> Path:
    """``run_dir``, the run folder a command reads, refused by name where it is missing or not a folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise (NotADirectoryError(f"run folder {run_dir} is not a folder") if run_dir.exists() else
               FileNotFoundError(f"run folder {run_dir} does not exist"))
    return run_dir


def load_best_model(run_dir, among: tuple[str, ...] = tuple(METHODS)) -> tuple[MetaNeighborhoods, dict]:
    """The best-on-validation network of a classify run folder, rebuilt from its checkpoint, and its info. Given
    the top folder of a --method all run, the error names the method folders ``among`` those the caller takes."""
    run_folder(run_dir)
    stem = Path(run_dir) / BEST
    if not checkpoint.exists(stem):
        methods = [name for name in among if checkpoint.exists(Path(run_dir) / name / BEST)]
        if methods:  # the parent of a --method all run: say which folders to pass
            raise FileNotFoundError(f"{stem}.json is missing: {run_dir} holds a --method all run; pass one of its "
                                    f"method folders: {', '.join(str(Path(run_dir) / name) for name in methods)}")
        raise FileNotFoundError(f"{stem}.json is missing: {run_dir} is not a classify run folder, or the run has "
                                "not finished an epoch yet")
    model, info = load_checkpoint(stem)
    check_best(Path(run_dir), info)
    return model.eval(), info


def check_best(run_dir: Path, info: dict, model_args: dict | None = None) -> None:
    """Checkpoint ``best`` of the run in ``run_dir`` (its ``info``) against checkpoint ``last``, which records the
    best epoch and its metrics, and against the network the run's ``config.json`` records (and ``model_args``, the
    one its configuration builds, where given): another run's best, or an edited one, would otherwise be tested,
    analysed and exported as this run's."""
    source = f"{run_dir / BEST}.json"
    recorded_args = read_json_object(run_dir / CONFIG).get("model")  # older runs and --method all's top: none
    for expected, whose in ((recorded_args, f"{run_dir / CONFIG} records"), (model_args, "the configuration builds")):
        saved = info.get("model_args")
        if expected is not None and saved != expected:
            both = isinstance(saved, dict) and isinstance(expected, dict)
            keys = sorted((k for k in {*saved, *expected} if saved.get(k) != expected.get(k)) if both else (), key=str)
            said = "; ".join(f"{shown(key)}: {shown(saved.get(key))} against {shown(expected.get(key))}"
                             for key in keys[:5]) + (f"; {len(keys)} fields differ" if len(keys) > 5 else "")
            said = said or f"{shown(saved)} against {shown(expected)}"
            raise CheckpointError(f"{source} is of another network than {whose} ({said}): another run's checkpoint, "
                                  "or an edited one")
    last = checkpoint.read_meta(run_dir / LAST) if checkpoint.exists(run_dir / LAST) else {}
    recorded = (last.get("stateful") or {}).get("best")  # none in older runs: nothing to compare with
    held = {"accuracy": info.get("validation_accuracy"), "loss": info.get("validation_loss"),
            "epoch": info.get("epoch")}
    if isinstance(recorded, dict) and recorded != held and not _saved_before_last(held, recorded, last.get("epoch")):
        raise CheckpointError(f"{source} holds epoch {shown(held['epoch'])} (validation accuracy "
                              f"{shown(held['accuracy'])}), where {LAST}.json records the best at epoch "
                              f"{shown(recorded.get('epoch'))} (validation accuracy "
                              f"{shown(recorded.get('accuracy'))}): one of them is another run's checkpoint, or an "
                              "edited one")


def _saved_before_last(held: dict, recorded: dict, trained) -> bool:
    """Whether best holds the epoch after the ``trained`` ones of checkpoint last, better than the best that last
    records: an epoch ends by saving best, then last, and a run stopped between the two (Ctrl-C, a time limit,
    SIGKILL) left them so; its resume trains that epoch again and writes the same best."""
    return (type(trained) is int and held["epoch"] == trained + 1 and all(
        isinstance(held[name], float) and isinstance(recorded.get(name), (int, float)) for name in ("accuracy", "loss"))
            and held["accuracy"] >= recorded["accuracy"])


def best_sha256(run_dir) -> str:
    """The digest of the best checkpoint's manifest, which names its weights by theirs: which of a run's checkpoints
    a graph or an analysis came from (read, as the checkpoint, under ``io.reading``)."""
    return sha256(Path(run_dir) / f"{BEST}.json")


def read_config(run_dir: Path, data_dir=None, cache_dir=None) -> ClassificationConfig:
    """The checked configuration of the run in ``run_dir`` (its ``config.json``), with the data and cache folders
    of the caller (never the folder's own: see the module docstring)."""
    path = Path(run_dir) / CONFIG
    saved = read_json_object(path)
    names = [f.name for f in fields(ClassificationConfig) if f.name not in PATH_FIELDS]
    saved = {**{name: RUN_DEFAULTS[name] for name in ADDED_SINCE}, **saved}
    missing = [name for name in names if name not in saved]
    if missing:
        raise RunFolderError(f"{path} lacks {', '.join(missing)}: not the configuration of a classify run")
    unknown = sorted(set(saved) - set(names) - set(PATH_FIELDS) - RECORDED_BESIDE)
    if unknown:  # an edited or another program's file: a setting it names would be silently ignored
        raise RunFolderError(f"{path}: unknown field {shown(unknown[0])}, which classify never writes")
    wrong = [name for name in names if not _json_type_fits(name, saved[name])]
    if wrong:
        raise RunFolderError(f"{path}: field {wrong[0]} has the wrong type ({saved[wrong[0]]!r})")
    try:
        config = ClassificationConfig(**{name: saved[name] for name in names}, data_dir=data_dir,
                                      cache_dir=cache_dir)
    except ValueError as error:
        raise RunFolderError(f"{path}: {error}") from None
    for kind, name, known in (("method", config.method, METHOD_NAMES),
                              ("backbone", config.backbone, available_backbones()),
                              ("image data set", config.dataset, available_image_datasets())):
        if name not in known:
            raise RunFolderError(f"{path}: unknown {kind} {name!r}")
    return config


def saved_config(run_dir: Path) -> dict:
    """The run's ``config.json`` as saved, beyond the settings ``read_config`` checks (the fixed choices it records,
    which a resume compares with its checkpoint's)."""
    return read_json_object(Path(run_dir) / CONFIG)


_FIELD_TYPES = {f.name: str(f.type) for f in fields(ClassificationConfig)}  # e.g. "int | None"


def _json_type_fits(name: str, value) -> bool:
    """Whether a JSON value has the type of ClassificationConfig field ``name`` (bools are not numbers here)."""
    kind = _FIELD_TYPES[name]
    if value is None:
        return "None" in str(kind)
    if "int" in str(kind):
        return type(value) is int
    if "float" in str(kind):
        return type(value) in (int, float)
    return type(value) is str


@contextmanager
def lock(run_dir: Path) -> Iterator[None]:
    """``io.lock`` on a classify run folder, whose killed writer's leftovers it then removes (``_remove_leftovers``)."""
    with folder_lock(run_dir):
        _remove_leftovers(Path(run_dir))
        yield


def _remove_leftovers(run_dir: Path) -> None:
    """The temporary files (``io.atomic_write``'s ``.<name>.<random>.tmp``) of a writer that was killed, and the
    tensor files a checkpoint's commit replaced (``checkpoint.remove_stale``): with the lock held nobody else writes
    here. Only those of the run's own files are removed."""
    own = (CONFIG, SPLIT, METRICS, RUN, METRICS_CSV, *COMPARISON, f"{BEST}.", f"{LAST}.")
    for folder in [run_dir, *(run_dir / name for name in METHODS if _is_method_dir(run_dir / name))]:
        for path in folder.glob(".*.tmp"):
            if path.is_file() and path.name[1:].startswith(own):
                path.unlink(missing_ok=True)
        for stem in (BEST, LAST):  # and the weights a commit replaced, its writer killed before it removed them
            checkpoint.remove_stale(folder / stem)


RUN_NAMED = {SPLIT, METRICS, RUN, METRICS_CSV, TENSORBOARD, *COMPARISON}  # what else a run writes beside its
# config.json and checkpoints, and what alone makes no run: a user's metrics.csv is not ours to remove


def holds_a_run(run_dir: Path) -> list[str]:
    """What in ``run_dir`` belongs to a classify run (its files, or method folders holding them): files of a run's
    names where a run's ``config.json`` or a checkpoint is there to say so. What analyze wrote beside a run's files
    is the run's too (an overwritten run keeps no figure of a model it no longer holds); alone, it is a folder of
    analyses, not a run."""
    run_dir = Path(run_dir)
    found = _run_named(run_dir)
    found = found if any(name not in RUN_NAMED for name in found) else []  # a config.json or checkpoint says so
    methods = sorted(name for name in METHODS if _is_method_dir(run_dir / name) and holds_a_run(run_dir / name))
    return sorted(found + (analyses_in(run_dir) if found else [])) + methods


def _run_named(run_dir: Path) -> list[str]:
    """The files in ``run_dir`` of the names a classify run writes: ``RUN_NAMED``, the checkpoints' files (their
    manifests included, ``checkpoint.owns``) and a ``config.json`` a run wrote (``_foreign_config``)."""
    return [p.name for p in run_dir.iterdir() if p.name in RUN_NAMED or checkpoint.owns(run_dir / BEST, p.name)
            or checkpoint.owns(run_dir / LAST, p.name) or p.name == CONFIG and not _foreign_config(run_dir / CONFIG)]


def _foreign_config(path: Path) -> str:
    """What makes ``path`` other than a run's ``config.json`` ('' when it is one, or is not there): a user's own file
    of that name, which is not ours to remove or replace. A run's is a JSON object naming a method and recording the
    method's settings (those of the neighbours, or, for a method without them, the network it builds), as every
    classify run's is."""
    if not (path.exists() or path.is_symlink()):
        return ""
    if path.is_symlink() or not path.is_file():
        return "is a link or not a regular file"
    try:
        saved = read_json_object(path)
    except RunFolderError:
        return "is not readable JSON"
    if saved.get("method") in METHOD_NAMES and (isinstance(saved.get(METHOD_SETTINGS), dict)
                                                or isinstance(saved.get("model"), dict)):
        return ""
    return "is not the configuration a classify run writes"


def _is_method_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def last_stems(run_dir, method: str | None) -> list[Path]:
    """Where a run of ``method`` keeps checkpoint ``last`` (``--method all``: in each method's folder; None: both)."""
    one, each = [Path(run_dir) / LAST], [Path(run_dir) / name / LAST for name in METHODS]
    return {"all": each, None: one + each}.get(method, one)


def resumable(run_dir, method: str | None = None) -> bool:
    """Whether ``run_dir`` holds a ``last`` checkpoint to continue, of a run of ``method`` (None: either kind)."""
    return any(checkpoint.exists(stem) for stem in last_stems(run_dir, method))


def claim(run_dir: Path, overwrite: bool, method: str, remove: bool = True) -> None:
    """Make ``run_dir`` ready for a new run of ``method``: refuse one that holds a run (offering --resume where it
    can), unless ``overwrite``, which removes the earlier run's files (and only those; not where ``remove`` is False:
    the checks alone, before the data are loaded). A ``config.json`` the new run would write (``--method all``: in
    each method's folder too) that no run wrote is refused either way, before anything is removed: the run would
    replace it; so are files of the other names a run writes where no run is, and another run's analyses."""
    refuse_other_runs(run_dir, "classify")
    folders = [Path(run_dir), *(Path(run_dir) / name for name in METHODS if method == "all")]
    for path in (folder / CONFIG for folder in folders):
        problem = _foreign_config(path)
        if problem:
            raise RunFolderError(f"{path} {problem}, and the run would replace it: move it, or choose another --out")
    found = holds_a_run(run_dir)
    for folder in folders:  # what the run writes into each, where no run is recorded there: a user's files
        top = folder == folders[0]
        written = RUN_NAMED - (set() if method == "all" and top else set(COMPARISON))
        held = _is_method_dir(folder) and (found if top else holds_a_run(folder))
        analyses = analyses_in(folder)
        if analyses and not held:  # analyze --out of another run: a run here would pass them for its own
            raise RunFolderError(f"{folder} holds {', '.join(analyses[:4])} of an analysis of another run, which "
                                 "would pass for this run's: move them, or choose another --out")
        strays = [] if not _is_method_dir(folder) or held else \
            sorted(name for name in _run_named(folder) if name in written)
        if strays:
            raise RunFolderError(f"{folder} holds {', '.join(strays)} of the names a run writes, and no run's "
                                 f"{CONFIG} or checkpoint: the run would replace them; move them, or choose another "
                                 "--out")
    if not overwrite:
        refuse_held(run_dir, found, resume=resumable(run_dir))
    if remove:
        _remove(Path(run_dir), found)


def _remove(run_dir: Path, found: list[str]) -> None:
    """The files of an earlier run that ``holds_a_run`` found in ``run_dir``, and those of its method folders: its
    analyses first and its config.json and checkpoints last, so that an interrupted removal leaves a run (whose
    --overwrite goes on), never analyses without their run (which a new run there refuses as another run's)."""
    analyses = analyses_in(run_dir)
    for name in sorted(found, key=lambda name: 0 if name in analyses else 1 if name in RUN_NAMED or name in METHODS
                       else 2):
        path = run_dir / name
        if name == TENSORBOARD and path.is_dir() and not path.is_symlink():
            _remove_event_files(path)
        elif path.is_dir() and not path.is_symlink():  # a method's folder of --method all: gone once empty
            _remove(path, holds_a_run(path))
            remove_created([path])  # and its lock, which analyze of it left
        else:
            path.unlink(missing_ok=True)


def _remove_event_files(folder: Path) -> None:
    """The event files a run's TensorBoard log wrote, and the folder once empty: what else is there stays."""
    for path in folder.glob("events.out.tfevents.*"):
        if path.is_file() and not path.is_symlink():
            path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


@dataclass(frozen=True, eq=False)
class Split:
    """The images a run trained and validated on, as indices into its data set's train split, and the
    per-channel mean and std (of the whole train split, in [0, 1]) its inputs were normalised with."""

    train: np.ndarray
    validation: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]


def write_split(run_dir: Path, split: Split) -> None:
    write_json(Path(run_dir) / SPLIT, {"train": split.train.tolist(), "validation": split.validation.tolist(),
                                       "mean": list(split.mean), "std": list(split.std)})


def read_split(run_dir: Path, n_images: int) -> Split:
    """The run's ``split.json``, checked against a train split of ``n_images`` images."""
    path = Path(run_dir) / SPLIT
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: removed, or the run was written by an older version "
                                "of meta-neighborhoods that did not record it; train the run again")
    saved = read_json_object(path)
    for name in ("train", "validation", "mean", "std"):
        if not (isinstance(saved.get(name), list) and saved[name]):
            raise RunFolderError(f"{path}: field {name} should be a non-empty list")
    if not all(type(i) is int for name in ("train", "validation") for i in saved[name]):
        raise RunFolderError(f"{path}: the train and validation fields should hold image indices (integers)")
    for name in ("train", "validation"):  # checked as Python ints: 10**30 overflows an int64 array
        if not all(0 <= i < n_images for i in saved[name]):
            raise ValueError(f"{path}: the {name} indices do not fit a train split of {n_images} images; is this the "
                             "data set the run was trained on?")
    indices = {name: np.asarray(saved[name], dtype=np.int64) for name in ("train", "validation")}
    normalisation = [saved["mean"], saved["std"]]
    if not (len(saved["mean"]) == len(saved["std"]) and all(
            type(v) in (int, float) and is_finite(v) for values in normalisation for v in values)
            and all(v > 0 for v in saved["std"])):
        raise RunFolderError(f"{path}: mean and std should be equally long lists of finite numbers, std positive")
    return Split(indices["train"], indices["validation"], tuple(saved["mean"]), tuple(saved["std"]))


def read_split_of(run_dir: Path, dataset) -> Split:
    """``read_split`` for the ``ImageDataset`` loaded now, refused unless its channel statistics are those the run
    recorded: other pixels under the same name (the official CIFAR-10 files in place of its JPEG copy, another
    download) would continue or analyse another experiment without a word."""
    split = read_split(run_dir, len(dataset.train))
    if not len(split.mean) == len(dataset.mean):  # allclose would broadcast one channel's statistics to three
        raise RunFolderError(f"{Path(run_dir) / SPLIT}: mean and std should hold one value per channel of "
                             f"{dataset.name}'s images ({len(dataset.mean)}), got {len(split.mean)}")
    if not _same_images(split.mean, split.std, dataset):
        raise RunFolderError(f"{Path(run_dir) / SPLIT}: {_other_images(split.mean, dataset)}: not the images the run "
                             "was trained on")
    return split


def check_split(run_dir: Path, dataset, drawn: Split) -> None:
    """The split a resumed run records against the one its seed and settings draw (``drawn``), which it trains on
    again: a split.json of another run would stay the record that ``analyze`` reads, of images it never used."""
    saved = read_split_of(run_dir, dataset)
    if not (np.array_equal(saved.train, drawn.train) and np.array_equal(saved.validation, drawn.validation)):
        raise RunFolderError(f"{Path(run_dir) / SPLIT} lists other images than the run's seed and settings draw: "
                             "another run's split, or an edited one")


def _other_images(mean, dataset) -> str:
    """What differs between the images a run recorded (their channel ``mean``) and the ``dataset`` loaded now."""
    return (f"the run trained on {dataset.name} images of channel means {np.round(mean, 6).tolist()}, but those "
            f"under the data folder given have {np.round(dataset.mean, 6).tolist()}")


def _same_images(mean, std, dataset) -> bool:
    """Whether the ``dataset`` loaded now has the channel statistics a run recorded (as many channels)."""
    return (len(mean) == len(dataset.mean) and np.allclose(mean, dataset.mean, rtol=1e-9, atol=0)
            and np.allclose(std, dataset.std, rtol=1e-9, atol=0))


def check_rerun_images(recorded: dict | None, dataset) -> None:
    """A rerun from a run's record (``recorded``: the record's path and the channel statistics its run.json gives) is
    refused on other images under the same name, as a resume is: the record's run did not train on them."""
    if recorded is not None and not _same_images(recorded["mean"], recorded["std"], dataset):
        raise ConfigError(f"{recorded['record']}: {_other_images(recorded['mean'], dataset)} (another copy or "
                          "download): to train on them, give its options in a file of options or on the command "
                          "line, not its record")
