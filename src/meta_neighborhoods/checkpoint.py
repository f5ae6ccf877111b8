"""Checkpoints that never execute code and never leave half a file behind.

A checkpoint ``<stem>`` is two files: ``<stem>.<token>.safetensors`` (every tensor: weights, optimiser
moments, RNG states) and ``<stem>.json`` (everything else: configuration, step, and the name and
sha256 of its tensor file). The tensor file is written first under a fresh name, then the JSON replaces the
previous one by an atomic rename: that rename is the commit. A crash at any moment leaves the previous JSON
pointing at its own, intact tensor file; stale tensor files are removed only after the commit.
Loading reads JSON and safetensors only, so a checkpoint cannot run code (unlike ``torch.load`` of a pickle).
"""

from __future__ import annotations

import json
import random
import re
import secrets
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .io import atomic_write, read_record, replaceable, sha256, write_json
from .signals import deferred_signals
from .validation import is_real

FORMAT = "meta-neighborhoods-checkpoint"
VERSION = 1
MANIFEST_FIELDS = ("format", "version", "tensors", "sha256")  # beside the metadata a writer adds
MAX_MANIFEST_BYTES = 32 << 20  # a saved estimator's label and feature names, loss curves: far less
MAX_STEPS = 2**53  # a count of optimiser steps below it: exact in the float64 that AdamW's state holds it in
MODEL = "model."  # the prefix of the network's tensors in every checkpoint (training's last, best, a saved estimator)


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, unsafe, or written for another configuration."""


TOKEN_HEX = 8  # hex digits of the random token in a tensor file's name


def _manifest(stem: Path) -> Path:
    return stem.with_name(stem.name + ".json")


def _tensor_file(stem: Path) -> str:
    """The pattern of this checkpoint's tensor file names: ``<stem>.<token>.safetensors``."""
    return rf"{re.escape(stem.name)}\.[0-9a-f]{{{TOKEN_HEX}}}\.safetensors"


def _own_files(stem: Path) -> re.Pattern:
    """Names this checkpoint writes: its tensor files, and the temporary files of an interrupted write (of
    either file). Other files that merely start with the stem (``model.backup.safetensors``) never match."""
    tensors = _tensor_file(stem)
    return re.compile(rf"{tensors}|\.({tensors}|{re.escape(stem.name)}\.json)\..+\.tmp")


def owns(stem: str | Path, name: str) -> bool:
    """Whether a file called ``name`` beside ``stem`` is one of checkpoint ``stem``'s files."""
    return name == _manifest(Path(stem)).name or bool(_own_files(Path(stem)).fullmatch(name))


def exists(stem: str | Path) -> bool:
    return _manifest(Path(stem)).is_file()


def save(stem: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write ``tensors`` and the JSON-able ``meta`` as checkpoint ``stem``; returns the JSON path.

    After the commit (the manifest's rename), the files of this checkpoint's earlier versions are removed: older
    tensor files and the temporary files a killed writer left; nothing else in the folder is touched.
    """
    stem = Path(stem)
    if not stem.parent.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {stem}: folder {stem.parent} does not exist")
    size = len(json.dumps(meta, indent=2))  # as write_json writes it (ASCII): what load would refuse, refused now
    if size > MAX_MANIFEST_BYTES - 4096:  # and the manifest's own four fields
        raise ValueError(f"cannot save checkpoint {stem}: its JSON ({size >> 20} MiB: label or feature names, loss "
                         f"curves) would exceed the {MAX_MANIFEST_BYTES >> 20} MiB a checkpoint's manifest may hold")
    replaceable(_manifest(stem))  # before the tensors are written, not after
    weights = stem.with_name(f"{stem.name}.{secrets.token_hex(TOKEN_HEX // 2)}.safetensors")
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    try:
        atomic_write(weights, lambda tmp: save_file(tensors, tmp))
    except SafetensorError as error:  # e.g. the disk is full: an OSError, as for any other file that cannot be written
        raise OSError(f"cannot write checkpoint {weights}: {error}") from None
    digest = sha256(weights)
    with deferred_signals():  # the commit and the removal of what it replaces, one step for Ctrl-C and SIGTERM
        manifest = write_json(_manifest(stem), {"format": FORMAT, "version": VERSION, "tensors": weights.name,
                                                "sha256": digest, **meta})
        _remove_others(stem, weights.name)
    return manifest


def remove_stale(stem: str | Path) -> None:
    """What a writer of checkpoint ``stem`` killed after its commit left (``save`` removes it otherwise): the files
    of this checkpoint but the tensor file its manifest names. Only under the folder's lock: a writer may be between
    its tensors and its commit. A damaged manifest names nothing; its checkpoint's files are left."""
    try:
        _remove_others(Path(stem), read_meta(stem)["tensors"])
    except (CheckpointError, FileNotFoundError):
        return


def _remove_others(stem: Path, kept: str) -> None:
    """The files checkpoint ``stem`` writes (``_own_files``: tensor files, interrupted writes' temporary files) but
    its tensor file ``kept``."""
    own = _own_files(stem)
    for path in stem.parent.iterdir():
        if path.name != kept and own.fullmatch(path.name):
            path.unlink(missing_ok=True)


def _regular_file_inside(path: Path, folder: Path, what: str) -> None:
    """Refuse symlinks and anything that resolves outside ``folder``: a checkpoint reads its own files only."""
    if path.is_symlink() or not path.is_file() or path.resolve().parent != folder.resolve():
        raise CheckpointError(f"{path} is not a regular file inside {folder}: refusing to read it as {what}")


def _read_manifest(manifest: Path) -> dict:
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:  # said as such, and never read whole
        raise CheckpointError(f"{manifest} is larger than {MAX_MANIFEST_BYTES >> 20} MiB, far more than any checkpoint "
                              "manifest this package writes")
    try:
        meta = read_record(manifest, MAX_MANIFEST_BYTES)
    except (ValueError, RecursionError) as error:  # grown meanwhile, not UTF-8, not JSON
        raise CheckpointError(f"{manifest} is not a readable checkpoint manifest (corrupt or truncated JSON: "
                              f"{type(error).__name__}: {error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{manifest} is not a meta-neighborhoods checkpoint manifest")
    if type(meta.get("version")) is not int or meta["version"] != VERSION:  # not true, which equals 1
        raise CheckpointError(f"{manifest} has checkpoint format version {meta.get('version')!r}; "
                              f"this version of meta-neighborhoods reads version {VERSION}")
    tensors, digest = meta.get("tensors"), meta.get("sha256")
    if not (isinstance(tensors, str) and re.fullmatch(_tensor_file(manifest.with_suffix("")), tensors)
            and isinstance(digest, str)):
        raise CheckpointError(f"{manifest}: the fields tensors and sha256 should name this checkpoint's own tensor "
                              f"file and its digest, got tensors={tensors!r}")
    return meta


def read_meta(stem: str | Path) -> dict:
    """The checked metadata of checkpoint ``stem``, its tensors left unread: what a resume compares before it
    builds anything."""
    manifest = _manifest(Path(stem))
    if not manifest.exists() and not manifest.is_symlink():  # a missing file, as torch.load and joblib say it
        raise FileNotFoundError(f"no checkpoint at {manifest}: the file does not exist")
    _regular_file_inside(manifest, manifest.parent, "a checkpoint manifest")
    return _read_manifest(manifest)


def load(stem: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of checkpoint ``stem``, with a ``CheckpointError`` naming whatever is wrong."""
    meta, manifest = read_meta(stem), _manifest(Path(stem))
    weights = manifest.with_name(meta["tensors"])
    if not weights.exists() and not weights.is_symlink():
        raise CheckpointError(f"checkpoint {manifest} names {weights.name}, which is missing")
    _regular_file_inside(weights, manifest.parent, "its tensor file")
    if sha256(weights) != meta["sha256"]:
        raise CheckpointError(f"{weights} is damaged: its sha256 differs from the one recorded in {manifest.name}")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights} is not a valid safetensors file ({error})") from None
    return tensors, meta


# ---------------------------------------------------------------------------------------------------
# What goes into a checkpoint: modules, optimisers, random number generators


def with_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{name}": t for name, t in tensors.items()}


def take_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


def network_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The network's tensors as every checkpoint holds them (under ``MODEL``), beside whatever else it keeps."""
    return with_prefix(MODEL, module.state_dict())


def network_of(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's state in a checkpoint's ``tensors`` (the inverse of ``network_tensors``)."""
    return take_prefix(MODEL, tensors)


def load_network(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """The network in a checkpoint's ``tensors`` loaded into ``module``, as ``module.load_state_dict`` would, but a
    mismatch names the configuration problem, not torch internals, and non-finite weights are refused."""
    state, expected = network_of(tensors), module.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = [f"{name} {tuple(state[name].shape)} {state[name].dtype} (model: {tuple(t.shape)} {t.dtype})"
             for name, t in expected.items()
             if name in state and (state[name].shape, state[name].dtype) != (t.shape, t.dtype)]
    if not (missing or unexpected) and wrong and all(state[n].shape == t.shape for n, t in expected.items()):
        raise CheckpointError(f"{source} holds weights of another dtype than the model's, the same shapes: "
                              f"{', '.join(wrong[:5])}")
    if missing or unexpected or wrong:
        parts = [f"missing {', '.join(missing[:5])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
                 f"shapes or types differ: {', '.join(wrong[:5])}" if wrong else ""]
        raise CheckpointError(f"{source} was written for another model configuration: "
                              + "; ".join(p for p in parts if p))
    broken = non_finite(state)
    if broken:
        raise CheckpointError(f"{source} holds NaN or infinite values in {', '.join(broken[:5])}: refusing to load "
                              "a diverged or damaged network")
    module.load_state_dict(state)


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` that hold NaN or infinite values."""
    return [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimiser's tensors (per-parameter moments, steps) and the JSON-able rest (hyper-parameters)."""
    state = optimizer.state_dict()
    tensors, other = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value
            else:
                other.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": other}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                   source: str = "the checkpoint") -> None:
    """Restore the optimiser's per-parameter state, checked against the optimiser the configuration built: the
    recorded groups and hyper-parameters must be its own (they are not taken from the file: the learning rate is
    the schedule's, see ``training_state.TrainingState.load``), and every parameter with a state has all its entries,
    shaped like the parameter."""
    fresh = optimizer.state_dict()
    try:
        groups = [{**group, **({"betas": tuple(group["betas"])} if "betas" in group else {})}
                  for group in meta["param_groups"]]
        if [{k: v for k, v in g.items() if k != "lr"} for g in groups] != \
                [{k: v for k, v in g.items() if k != "lr"} for g in fresh["param_groups"]]:
            raise CheckpointError(f"{source}: the optimiser's groups or hyper-parameters differ from the ones the "
                                  "configuration implies")
        entries: dict[int, dict] = {int(index): dict(values) for index, values in meta["state"].items()}
        for name, tensor in tensors.items():
            index, key = name.split(".", 1)
            entries.setdefault(int(index), {})[key] = tensor
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{source}: the optimiser state is damaged ({type(error).__name__}: {error})") from None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in entries.items():
        if not (0 <= index < len(params) and complete_moments(entry, params[index])):
            raise CheckpointError(f"{source}: the optimiser state of parameter {index} is incomplete, misshapen or "
                                  "of another type")
    optimizer.load_state_dict({"state": entries, "param_groups": fresh["param_groups"]})


def complete_moments(entry: dict, param: torch.Tensor) -> bool:
    """Whether ``entry`` is AdamW's whole state of ``param``: a step count, and both moments shaped and typed like it."""
    moments = [entry.get(key) for key in ("exp_avg", "exp_avg_sq")]
    step = entry.get("step")
    step = step.item() if torch.is_tensor(step) and step.numel() == 1 else step
    return (set(entry) == {"step", "exp_avg", "exp_avg_sq"} and is_real(step) and 0 <= step < MAX_STEPS
            and all(torch.is_tensor(m) and m.shape == param.shape and m.dtype == param.dtype for m in moments))


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Every global random number generator a training run draws from (torch CPU and CUDA, numpy, random)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    return tensors, {"numpy": [kind, keys.tolist(), position, has_gauss, gauss],
                     "python": [version, list(internal), python_gauss]}


def load_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, keys, position, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, python_gauss = meta["python"]
    random.setstate((version, tuple(internal), python_gauss))
