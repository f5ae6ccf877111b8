"""The estimators' ``save`` and ``load``, on top of the checkpoint format itself: fitted attributes as JSON and
tensors, and checkpoint paths (the deployable module, raw rows in, answer out, is ``export``'s)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__, checkpoint
from .checkpoint import CheckpointError
from .config import TRAINING_ONLY
from .estimator_settings import check_before_fit, method_config
from .factories import FACTORIES, build_head, build_network, hidden_widths
from .io import prepare_out_dir
from .provenance import provenance
from .training import resolve_device, torch_globals
from .training_state import carried_from_file, carried_to_file
from .validation import ConfigError, is_real, shown

MAX_LABEL = 10_000  # characters of a class label or feature name that a saved estimator may hold
MAX_LABEL_BYTES = 1 << 28  # what one label array may take in memory, whatever dtype its file names
NOT_SAVED = ("model_", "_carried")  # saved apart: the network's tensors, partial_fit's training state (CARRIED)
CARRIED = "carried"  # partial_fit's training state: its key in the JSON and, with a dot, its tensors' prefix
SAVED_FIELDS = frozenset((*checkpoint.MANIFEST_FIELDS, "estimator", "params", "fitted", "arrays", CARRIED,
                          "meta_neighborhoods_version", "saved_by"))  # what save writes
FOLDER_MODEL = "model"  # the checkpoint that ``load`` reads in a folder: a fit folder's model.json
FITTED_PREFIX = "fitted."  # the prefix of the numeric fitted attributes' tensors (the network's: checkpoint.MODEL)


def to_json(value):
    """Tuples, numpy arrays and numpy scalars as their JSON counterparts (lists, numbers); the rest unchanged."""
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def json_only(what: str, entries: dict) -> dict:
    """``entries`` as JSON values, or a ValueError naming the one that is not (before anything is written)."""
    entries = to_json(entries)
    for name, value in entries.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"cannot save {what} {name}={value!r} ({error}): save() keeps JSON values only; "
                             "pickle or joblib keep any object") from None
    return entries


def split_fitted(attributes: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Fitted attributes as (tensors, JSON): numeric arrays as tensors; label arrays, names and numbers as JSON."""
    tensors, arrays, values = {}, {}, {}
    for name, value in attributes.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            tensors[name] = torch.from_numpy(value)
        elif isinstance(value, np.ndarray):  # string or object labels, feature names
            arrays[name] = {"dtype": value.dtype.str, "values": value.tolist()}
        else:
            values[name] = value
    return checkpoint.with_prefix(FITTED_PREFIX, tensors), {"fitted": json_only("fitted attribute", values),
                                                     "arrays": json_only("array", arrays)}


def join_fitted(meta: dict, tensors: dict[str, torch.Tensor], allowed: frozenset, source: str) -> dict:
    """The inverse of ``split_fitted``: the fitted attributes from a checkpoint's JSON and tensors, refused before any
    array is built if they hold a name outside ``allowed`` (what fit sets)."""
    numeric = checkpoint.take_prefix(FITTED_PREFIX, tensors)
    unknown = sorted((set(meta["fitted"]) | set(meta["arrays"]) | set(numeric)) - allowed)
    if unknown:
        raise CheckpointError(f"{source}: unknown fitted attribute(s) {', '.join(unknown[:5])}: refused")
    twice = sorted((set(meta["fitted"]) & set(meta["arrays"])) | ((set(meta["fitted"]) | set(meta["arrays"]))
                                                                  & set(numeric)))
    if twice:  # split_fitted writes each in one place: which one would hold?
        raise CheckpointError(f"{source}: fitted attribute(s) {', '.join(twice[:5])} given twice: refused")
    return {**meta["fitted"], **{name: _label_array(name, a) for name, a in meta["arrays"].items()},
            **{name: t.numpy() for name, t in numeric.items()}}


def _label_array(name: str, entry: dict) -> np.ndarray:
    """A label or name array from a checkpoint's JSON, as ``split_fitted`` wrote it: a flat list of strings or
    numbers, of a dtype that holds them (strings of at most MAX_LABEL characters, at most MAX_LABEL_BYTES in all: a
    file cannot claim gigabytes, as 10,000 empty labels of a 10,000-character dtype would)."""
    dtype, values = np.dtype(entry["dtype"]), entry["values"]
    if (dtype.kind not in "UObiuf" or not isinstance(values, list)
            or not all(isinstance(value, (str, int, float, bool)) for value in values)):
        raise ValueError(f"array {name} should be a flat list of strings or numbers, of their dtype")
    if dtype.kind == "U" and dtype.itemsize > 4 * MAX_LABEL:
        raise ValueError(f"array {name}'s dtype {dtype.str} holds strings of over {MAX_LABEL} characters")
    if len(values) * dtype.itemsize > MAX_LABEL_BYTES:
        raise ValueError(f"array {name} of {len(values)} values of dtype {dtype.str} would take "
                         f"{len(values) * dtype.itemsize} bytes, over {MAX_LABEL_BYTES}")
    return np.array(values, dtype=dtype)


WITH_NEIGHBOURS, VANILLA = "meta_neighborhoods", "vanilla"  # the values of selected_: the network fit kept
NETWORK = {"n_features": int, "n_outputs": int, "dictionary_size": int, "similarity": str, "temperature": float}


def check_fitted(fitted: dict, source: str) -> None:
    """Fitted attributes from a file (of names ``fit`` sets: ``join_fitted``), checked before anything is built from
    them: a ``network_`` of the right fields and types, a ``selected_`` that names it, and the rest
    (``_FITTED_CHECKS``)."""
    network = fitted.get("network_")
    if not (isinstance(network, dict) and set(network) == set(NETWORK)
            and all(type(network[k]) is t or (t is float and type(network[k]) is int) for k, t in NETWORK.items())):
        raise CheckpointError(f"{source}: network_ should hold {', '.join(NETWORK)}, got {network!r}")
    selected = VANILLA if network["dictionary_size"] == 0 else WITH_NEIGHBOURS
    if "selected_" in fitted and fitted["selected_"] != selected:
        raise CheckpointError(f"{source}: selected_ should be {selected!r} for a dictionary of "
                              f"{network['dictionary_size']} keys, got {fitted['selected_']!r}")
    for name, ok, what in _FITTED_CHECKS:
        if name in fitted and not ok(fitted[name], network):
            raise CheckpointError(f"{source}: {name} should be {what}, got {shown(fitted[name])}")


def _numbers(value) -> bool:
    return isinstance(value, list) and all(type(v) in (int, float) and is_real(v) for v in value)  # not 10**400


_FITTED_CHECKS = (  # (name, test of its value given network_, what it should be): the rest of what fit sets
    ("n_iter_", lambda v, n: type(v) is int and v >= 0, "a non-negative integer"),
    ("best_epoch_", lambda v, n: type(v) is int and v >= 0, "a non-negative integer"),
    ("best_loss_", lambda v, n: _numbers([v]), "a number"),
    ("loss_curve_", lambda v, n: _numbers(v), "a list of numbers"),
    ("validation_loss_curve_", lambda v, n: v is None or _numbers(v), "a list of numbers or None"),
    ("validation_losses_", lambda v, n: isinstance(v, dict) and set(v) <= {WITH_NEIGHBOURS, VANILLA}
     and _numbers(list(v.values())), "a map of meta_neighborhoods and vanilla to numbers"),
    ("n_features_in_", lambda v, n: v == n["n_features"] and type(v) is int, "network_'s n_features"),
    ("_y_ndim", lambda v, n: type(v) is int and v in ((1, 2) if n["n_outputs"] == 1 else (2,)),
     "1 or 2 for one target, 2 for several"),
)


def check_shapes(fitted: dict, tensors: dict, head, hidden: tuple, source: str) -> None:
    """The sizes ``network_`` and the parameters (the ``head`` named, of ``hidden`` widths) imply, against the tensor
    file's own shapes: a crafted size must fail here, not make torch allocate terabytes when the network is built.
    The head expected is built on the meta device (no storage), once its layers and sizes are known to be within
    what the file's head holds (every layer has a weight and a bias; every size, as many values)."""
    network, state = fitted["network_"], checkpoint.network_of(tensors)
    held = [t for name, t in state.items() if name.startswith("head.")]
    sizes = (network["n_features"], network["n_outputs"], *hidden)
    if 2 * (len(hidden) + 1) > len(held) or max(sizes) > sum(t.numel() for t in held):
        raise CheckpointError(f"{source} was written for another model configuration: its network_ and parameters ask "
                              f"for {len(hidden)} hidden layers and sizes up to {max(sizes)}, more than the tensor "
                              f"file's head holds ({len(held)} tensors)")
    try:
        with torch.device("meta"):
            expected = build_head(head, network["n_features"], network["n_outputs"], hidden).state_dict()
    except RuntimeError as error:  # a size torch cannot count (its numel overflows)
        raise CheckpointError(f"{source}: network_ and parameters describe no head torch can size "
                              f"({' '.join(str(error).split())[:120]})") from None
    for name, t in expected.items():
        found = state.get(f"head.{name}")
        if found is None or found.shape != t.shape:
            raise CheckpointError(f"{source} was written for another model configuration: shapes differ: head.{name} "
                                  f"is {None if found is None else tuple(found.shape)} in the tensor file, "
                                  f"{tuple(t.shape)} by its network_ and parameters")
    keys = state.get("dictionary.keys")
    if (0 if keys is None else tuple(keys.shape)) != (
            0 if network["dictionary_size"] == 0 else (network["dictionary_size"], network["n_features"])):
        raise CheckpointError(f"{source}: the dictionary's keys do not match network_ {network}")


def check_columns(fitted: dict, source: str, targets: bool = False) -> None:
    """What predict applies without a word, and returns: the inputs' (``targets``: and targets') means and scales, a
    finite value for each column of ``network_``, the scales positive; the classes; the features' names."""
    network, classes, names = fitted["network_"], fitted.get("classes_"), fitted.get("feature_names_in_")
    scaled = {"x": network["n_features"], **({"y": network["n_outputs"]} if targets else {})}
    for side, size in scaled.items():
        for name in (f"{side}_mean_", f"{side}_scale_"):
            values = np.asarray(fitted.get(name, []))
            if values.shape != (size,) or values.dtype != np.float64 or not np.isfinite(values).all():  # as fit sets
                raise CheckpointError(f"{source}: {name} should hold {size} finite float64 values, got {values.dtype}")
        if not (np.asarray(fitted[f"{side}_scale_"]) > 0).all():  # fit never gives a scale of 0
            raise CheckpointError(f"{source}: {side}_scale_ should hold positive values")
    if targets and "_y_ndim" not in fitted:  # its value is checked with the other fitted attributes
        raise CheckpointError(f"{source}: _y_ndim should be 1 or 2 for one target, 2 for several")
    if classes is not None and np.ndim(classes) != 1:
        raise CheckpointError(f"{source}: classes_ should be a flat list of the classes, got shape {np.shape(classes)}")
    if classes is not None and any(isinstance(c, float) and not math.isfinite(c) for c in classes.tolist()):
        raise CheckpointError(f"{source}: classes_ should hold finite values (predict returns them)")
    if classes is not None and len(np.unique(classes)) != len(classes):
        raise CheckpointError(f"{source}: classes_ should name each class once")
    if names is not None and not len(set(names.tolist())) == len(names) == network["n_features"]:
        raise CheckpointError(f"{source}: feature_names_in_ should name each of the {network['n_features']} features "
                              f"once, got {len(names)} names")


def checkpoint_stem(path) -> Path:
    """``model`` or ``model.json`` -> the stem of checkpoint ``model.json`` + ``model.<token>.safetensors``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path} is a tensor file, not a checkpoint: pass the checkpoint's stem ('model') or "
                              "its manifest ('model.json')")
    return path.with_suffix("") if path.suffix == ".json" else path


def unpickled(cls, state: dict) -> dict:
    """An estimator's pickled ``state`` with the parameters a pickle of an earlier version lacks at their defaults,
    and a warning naming them: get_params, repr, fit and save would raise AttributeError, and where a default is not
    the behaviour it was fitted with (an absent ``top_k`` was full attention), only its user knows."""
    signature = inspect.signature(cls.__init__).parameters
    defaults = {name: signature[name].default for name in cls._get_param_names()
                if name not in state and name in signature and signature[name].default is not inspect.Parameter.empty}
    if defaults:
        warnings.warn(f"a pickled {cls.__name__} of an earlier version lacks the parameter(s) {', '.join(defaults)}: "
                      f"they take this version's defaults, which need not be what it was fitted with", UserWarning,
                      stacklevel=3)
    return {**defaults, **state}


def pickled(state: dict) -> dict:
    """An estimator's ``state`` with the network on the CPU: torch writes each tensor's device into a pickle, and a
    network fitted on a GPU failed to unpickle on a machine without one (``pickle.load`` takes no ``map_location``)."""
    model = state.get("model_")
    if isinstance(model, nn.Module) and any(t.device.type != "cpu" for t in model.state_dict().values()):
        state["model_"] = copy.deepcopy(model).cpu()
    return state


def check_params(estimator) -> None:
    """The parameters of an estimator from a file, checked as fit would (its settings, seed and device's name), and
    without a factory, which ``save`` never writes: a file's parameter would otherwise fail only at the next fit."""
    for name in FACTORIES:  # a head the package ships is named (a string, which check_settings checks)
        if getattr(estimator, name) is not None and not (name == "head" and isinstance(estimator.head, str)):
            raise ConfigError(f"{name} must be null{' or a name of a head the package ships' if name == 'head' else ''}: "
                              f"save writes no factory, got {shown(getattr(estimator, name))}")
    try:
        check_before_fit(estimator, 1, 1)  # every setting and the method's, as a fit on any rows checks them
    except ConfigError:
        raise
    except ValueError:  # scikit-learn's check_random_state, the one check that raises no ConfigError
        raise ConfigError(f"random_state must be null or a seed from 0 to 2**32 - 1, got "
                          f"{shown(estimator.random_state)}") from None
    try:
        resolve_device(estimator.device)
    except RuntimeError:  # a device this machine lacks (a model fitted on a GPU): a refit here would say so
        pass


def rebuild(cls, meta: dict, tensors: dict, source: str):
    """(estimator, fitted attributes, unloaded network) of estimator class ``cls`` from a checkpoint's contents,
    every field checked first (``check_fitted``, ``check_shapes``, ``check_columns``): a CheckpointError if wrong."""
    if meta.get("estimator") != cls.__name__:
        found = f"a {meta['estimator']}" if "estimator" in meta else "no estimator (another kind of checkpoint)"
        raise CheckpointError(f"{source} holds {found}, not a {cls.__name__}")
    unknown = sorted(set(meta) - SAVED_FIELDS)
    if unknown:
        raise CheckpointError(f"{source}: unknown field(s) {', '.join(map(repr, unknown[:5]))}: refused")
    try:
        missing = sorted(set(cls._get_param_names()) - set(meta["params"]))
        if missing:  # today's defaults need not be how it was fitted (an absent top_k was full attention)
            raise CheckpointError(f"{source}: no value for parameter(s) {', '.join(missing)}, which this version's "
                                  f"files hold: refused (fit it again with this version, or add to the file's "
                                  f"\"params\" the value{'s' * (len(missing) > 1)} it was fitted with)")
        estimator = cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in meta["params"].items()})
        check_params(estimator)
        fitted = join_fitted(meta, tensors, cls._FITTED, source)
        check_fitted(fitted, source)
        network = fitted["network_"]
        method_config(estimator, network["dictionary_size"], network["similarity"], network["temperature"])
        check_shapes(fitted, tensors, estimator.head, hidden_widths(estimator.hidden_layer_sizes), source)
        check_columns(fitted, source, targets=cls._task == "regression")
        if cls._task == "classification" and len(fitted["classes_"]) != network["n_outputs"]:
            raise ValueError(f"{len(fitted['classes_'])} classes_ for {network['n_outputs']} outputs")
        return estimator, fitted, build_network(estimator, **network)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, MemoryError) as error:
        raise CheckpointError(f"{source} does not describe a {cls.__name__} that this version can rebuild "
                              f"({type(error).__name__}: {error})") from None


def save(estimator, path) -> Path:
    """``estimator.save``: parameters and fitted attributes as JSON, the network's weights and arrays as tensors."""
    custom = [name for name in FACTORIES if getattr(estimator, name) is not None
              and not isinstance(getattr(estimator, name), str)]  # a head the package ships, by name, is a setting
    if custom:
        raise ValueError(f"cannot save a model built by a custom {' and '.join(custom)}: save() rebuilds networks "
                         "from JSON, which a factory is not; pickle or joblib the estimator instead (with the factory "
                         "defined at a module's top level, or a functools.partial of one: a lambda does not pickle)")
    changed = changed_since_fit(estimator)
    if changed:
        raise ValueError(f"cannot save: set_params since fit changed {', '.join(changed)}, from which load would "
                         "rebuild another network than the fitted one; fit again, or set them back")
    params = estimator._get_param_names()
    tensors, fitted = split_fitted(
        {name: value for name, value in vars(estimator).items() if name not in params and name not in NOT_SAVED})
    meta = {"estimator": type(estimator).__name__,
            "params": json_only("parameter", estimator.get_params(deep=False)),
            **fitted, "meta_neighborhoods_version": __version__, "saved_by": provenance()}  # never read back
    if getattr(estimator, "_carried", None):  # where the next call of partial_fit goes on from
        carried, meta[CARRIED] = carried_to_file(estimator._carried)
        tensors.update(checkpoint.with_prefix(f"{CARRIED}.", carried))
    stem = checkpoint_stem(path)
    prepare_out_dir(stem.parent)  # as export_onnx does
    return checkpoint.save(stem, {**checkpoint.network_tensors(estimator.model_), **tensors}, meta)


def changed_since_fit(estimator) -> list[str]:
    """What the estimator's parameters now build otherwise than its fitted ``model_`` (settings of the method that
    change what a trained network computes, or its weights' shapes): ``load`` rebuilds the network from the
    parameters ``save`` writes."""
    with torch_globals(rng_devices=[]):  # building draws initial weights: not from the caller's stream
        return differences(build_network(estimator, **estimator.network_), estimator.model_)


def differences(rebuilt: nn.Module, fitted: nn.Module) -> list[str]:
    """What network ``rebuilt`` (from the parameters now) computes otherwise than ``fitted``, or its weights' shapes:
    the method's settings that change what a trained network computes."""
    settings = [] if fitted.vanilla else [field.name for field in dataclasses.fields(fitted.config)
                                          if field.name not in TRAINING_ONLY]
    changed = [f"{name} ({getattr(fitted.config, name)!r} at fit, {getattr(rebuilt.config, name)!r} now)"
               for name in settings if getattr(rebuilt.config, name) != getattr(fitted.config, name)]
    shapes = [{name: tuple(t.shape) for name, t in net.state_dict().items()} for net in (rebuilt, fitted)]
    network = [{name: shape for name, shape in both.items() if name.startswith(("head.", "extractor."))}
               for both in shapes]  # what hidden_layer_sizes and the factories shape; the settings, the rest
    resized = network[0] != network[1] or (shapes[0] != shapes[1] and not changed)
    return changed + (["the weights' shapes (hidden_layer_sizes, or a head or extractor factory)"] if resized else [])


def continue_fitted(model: nn.Module, fitted: nn.Module) -> None:
    """A warm start: ``model``, built from the parameters now, takes the weights of the ``fitted`` network (training
    settings may have changed, and take effect), refused where the parameters build another network."""
    changed = differences(model, fitted)
    if changed:
        raise ConfigError(f"a warm start (warm_start=True, or a call of partial_fit after the first) cannot "
                          f"continue the fitted network: set_params since fit changed {', '.join(changed)}; fit "
                          "afresh (fit with warm_start=False), or set them back")
    model.load_state_dict(fitted.state_dict())


def saved_stem(path) -> Path:
    """The checkpoint a load of ``path`` reads: in a folder that holds one called ``FOLDER_MODEL`` (as
    ``meta-neighborhoods fit`` writes it), that one; else ``checkpoint_stem``'s (``save``'s, beside a folder of its
    name too). ``save`` takes a path to write, never a folder's default."""
    path = Path(path)
    if path.is_dir() and checkpoint.exists(path / FOLDER_MODEL):
        return path / FOLDER_MODEL
    if path.is_dir() and not (path.name and checkpoint.exists(checkpoint_stem(path))):  # no save('name') beside it
        raise FileNotFoundError(f"{path} is a folder that holds no saved model ({FOLDER_MODEL}.json): give the folder "
                                "meta-neighborhoods fit wrote, or the checkpoint save wrote")
    return checkpoint_stem(path)


def load(cls, path):
    """``cls.load``: the estimator ``save`` wrote, every field checked by ``rebuild`` before it is built."""
    stem = saved_stem(path)
    tensors, meta = checkpoint.load(stem)
    source = f"{stem}.json"
    stray = sorted(name for name in tensors if not name.startswith((checkpoint.MODEL, FITTED_PREFIX, f"{CARRIED}.")))
    if stray:
        raise CheckpointError(f"{source}: unknown tensors {', '.join(repr(name)[:60] for name in stray[:3])}: refused")
    with torch_globals(rng_devices=[]):  # the initial weights it draws are replaced: not from the caller's stream
        estimator, fitted, model = rebuild(cls, meta, tensors, source)
    if {t.dtype for t in checkpoint.network_of(tensors).values() if t.is_floating_point()} == {torch.float64}:
        model.double()  # a network the user made float64 (fit makes float32), saved so
    checkpoint.load_network(model, tensors, source)
    if CARRIED in meta:
        fitted["_carried"] = carried_from_file(checkpoint.take_prefix(f"{CARRIED}.", tensors), meta[CARRIED], model,
                                               source)
    vars(estimator).update(fitted)
    estimator.model_ = model.eval()
    return estimator
