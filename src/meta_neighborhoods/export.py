"""ONNX export of a whole adapted predictor: attention over the dictionary, every inner step and the head in one graph.

The paper suggests deploying Meta-Neighborhoods locally, e.g. for privacy; an ONNX file runs in onnxruntime (or
any ONNX runtime) without Python, PyTorch or this package.

* Exporter: ``torch.onnx.export(..., dynamo=True)``, built on ``torch.export``, which traces sizes symbolically:
  the batch (and an image's height and width) stay free, and a size the code pins down (``len(x)``) shows as a
  constant in the graph, where ``export_onnx`` finds and refuses it. The TorchScript tracer (``dynamo=False``,
  deprecated since torch 2.9) bakes such sizes in silently: the cosine path's former ``len(z)`` gave a graph traced
  at batch 4 that failed at batch 7. It would export faster (0.2 s against 2-5 s); nothing else speaks for it.
  The dynamo exporter needs onnxscript (the ``export`` extra).
* Inner loop: the graph holds the heads' fast (closed-form) paths (``heads/``), whose inner gradients are plain
  tensor algebra. The generic ``torch.func`` path (``vmap`` of ``grad``) cannot be traced, so a model whose head has
  no fast path is refused with an error saying so.
* Metadata: a run's graph carries what a deployment needs beside it in ``metadata_props`` (strings; lists as JSON):
  ``classes`` (the output columns' names) and ``input_*`` (layout, channels, trained height and width, scale,
  per-channel mean and std, and the transform in words), from the run's ``run.json``; ``checkpoint_sha256``, which
  checkpoint it came from; and every graph ``exported_by``, what exported it (``provenance``, JSON).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__, checkpoint, runs
from .heads import FAST_PATHS, fast_path_for
from .io import LOCK, atomic_write, move_into_place, prepare_out_dir, reading, replaceable
from .model import MetaNeighborhoods
from .persistence import to_json
from .provenance import provenance
from .run_record import read_inputs
from .runs import RunFolderError, holds_a_run, load_best_model

OPSET = 18
INPUT, OUTPUT = "input", "output"
BATCH = {0: "batch"}
IMAGES = {0: "batch", 2: "height", 3: "width"}
CHECK_IMAGE_SIZE, CHECK_BATCH = 32, 7  # the random batch a run's export is checked on
LOGGER = logging.getLogger(__name__)


def _inner_loops(module: nn.Module) -> Iterator[MetaNeighborhoods]:
    return (m for m in module.modules() if isinstance(m, MetaNeighborhoods) and not m.vanilla)


def _exportable(module: nn.Module) -> nn.Module:
    """A CPU copy of ``module`` in evaluation mode whose inner loops take their fast path (the traceable one)."""
    for model in _inner_loops(module):
        if fast_path_for(model.head, model.adaptation.step_size.names) is None:
            heads = ", ".join(head.__name__ for head in FAST_PATHS)
            raise ValueError(f"cannot export the inner loop of a {type(model.head).__name__} head to ONNX: only heads "
                             f"with a closed-form fast path ({heads}; those declaring their last layer adapting it "
                             "alone) export; the generic torch.func path (vmap of grad) cannot be traced")
    broken = checkpoint.non_finite(module.state_dict())
    if broken:
        raise ValueError(f"cannot export a network with NaN or infinite values (in {', '.join(broken[:3])})")
    module = copy.deepcopy(module).cpu().eval()
    for model in _inner_loops(module):
        model.adaptation.implementation = "fast"
    return module


def _require(*modules: str) -> None:
    """Name the missing optional dependencies, and how to install them, before any work is done."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(f"ONNX export needs {', '.join(missing)}: pip install 'meta-neighborhoods[export]'")


def _check_free(program, dynamic_dims: dict[int, str]) -> None:
    """The exporter falls back to fixed sizes when the code pins one down; a graph for one batch size is refused."""
    shape = program.model.graph.inputs[0].shape
    fixed = [f"{name} (dimension {dim}) = {shape[dim]}" for dim, name in dynamic_dims.items()
             if isinstance(shape[dim], int)]
    if fixed:
        raise RuntimeError(f"the ONNX exporter fixed {', '.join(fixed)}: the module turns that size into a Python "
                           "number (e.g. len(x)); use x.shape[...] instead")


@contextmanager
def _quiet_exporter():
    """Silence what torch's exporter says about itself (torchvision absent, its own deprecations): not the user's
    concern. Errors still surface."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(module: nn.Module, example_input: torch.Tensor, path, dynamic_dims: dict[int, str] = BATCH,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``module``'s evaluation-mode forward pass as the ONNX graph ``path``, atomically; returns the path.

    One input ``"input"`` and one output ``"output"``; the input dimensions in ``dynamic_dims`` (default: the batch)
    stay free, the others take ``example_input``'s sizes; ``metadata`` goes into the model's ``metadata_props``, with
    ``exported_by``, the ``provenance`` of this export (JSON). The module is copied, never changed; the file's folder
    is created if needed.
    """
    _require("onnx", "onnxscript")
    path = Path(path)
    prepare_out_dir(path.parent)  # fail on an unwritable destination before tracing, not after
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the ONNX graph to {path}: it is a directory")
    replaceable(path)  # no device or pipe either, before tracing
    _check_dtype(module, example_input)
    dims = {dim: torch.export.Dim(name) for dim, name in dynamic_dims.items()}
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(_exportable(module), (_traceable(example_input, dynamic_dims),),
                                    input_names=[INPUT], output_names=[OUTPUT], opset_version=OPSET, dynamo=True,
                                    dynamic_shapes=(dims,), verbose=False)
    _check_free(program, dynamic_dims)
    program.model.metadata_props.update({**(metadata or {}), "exported_by": json.dumps(provenance())})
    return atomic_write(path, program.save)


def _traceable(example_input: torch.Tensor, dynamic_dims: dict[int, str]) -> torch.Tensor:
    """The example on the CPU, each free dimension of size 1 doubled: ``torch.export`` fixes a size 0 or 1 of its
    example as a constant (the cosine head's inner loop, traced from one row, gave a graph for one row only)."""
    example = example_input.cpu()
    for dim, name in dynamic_dims.items():
        if example.shape[dim] == 0:
            raise ValueError(f"the example input has no {name} (dimension {dim} is 0): give at least one")
        if example.shape[dim] == 1:
            example = torch.cat([example, example], dim=dim)
    return example


def _check_dtype(module: nn.Module, example_input: torch.Tensor) -> None:
    """Refuse an example input of another floating dtype than the module's weights, and weights of several: eager
    torch would refuse the forward pass, but the exporter writes a graph that mixes both, which onnxruntime cannot
    load."""
    weights = {p.dtype for p in module.parameters() if p.is_floating_point()}
    if len(weights) > 1:
        raise TypeError(f"the module's weights are of several dtypes, {', '.join(sorted(map(str, weights)))}: make "
                        "them one (.float() or .double())")
    if weights and example_input.dtype not in weights:
        raise TypeError(f"the example input is {example_input.dtype} but the module's weights are "
                        f"{', '.join(sorted(map(str, weights)))}: give an input of the weights' dtype")


def onnx_output(path, inputs: np.ndarray) -> np.ndarray:
    """What the graph at ``path`` gives for ``inputs`` (as float64 where the graph takes those: an estimator's
    network made float64), run by onnxruntime on the CPU."""
    _require("onnxruntime")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    double = session.get_inputs()[0].type == "tensor(double)"
    return session.run([OUTPUT], {INPUT: inputs.astype(np.float64) if double else inputs})[0]


def max_difference(path, module: nn.Module, inputs: torch.Tensor) -> float:
    """Largest |onnxruntime - PyTorch| over ``inputs``: how faithful the graph at ``path`` is to ``module``."""
    with torch.no_grad():
        torch_output = _exportable(module)(inputs)
    return float(np.abs(onnx_output(path, inputs.numpy()) - torch_output.numpy()).max())


def write_checked(path: Path, write: Callable[[Path], Path], difference: Callable[[Path], float],
                  replace: bool = False) -> float:
    """Write a graph with ``write`` into a scratch folder beside ``path``, measure it (``difference``: its largest
    from the answers of what it exports), and move it to ``path`` only where that is finite: otherwise nothing is
    written. A file at ``path`` is replaced only with ``replace`` (``--overwrite``), even one written meanwhile."""
    folder = prepare_out_dir(path.parent)
    _say_leftovers(folder, path.name)
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{path.name}.") as scratch:
        candidate = write(Path(scratch) / path.name)
        measured = difference(candidate)
        if not np.isfinite(measured):
            raise RuntimeError(f"the exported graph gives non-finite outputs on a random batch (difference "
                               f"{measured}); nothing was written")
        move_into_place(candidate, path, replace)
    return measured


def export_estimator(estimator, output: nn.Module, path) -> Path:
    """``estimator.export_onnx``: its network with the columns' scales and ``output`` as one graph, which takes rows
    in the network's dtype (float32 as fit makes it; float64 for a network the user made float64)."""
    dtype = next(estimator.model_.parameters()).dtype  # the estimator's network itself is never changed
    deployed = Deployed(estimator.model_, estimator.x_mean_, estimator.x_scale_, output, dtype)
    return export_onnx(deployed, torch.zeros(2, estimator.n_features_in_, dtype=dtype), path,
                       metadata=_deployment_metadata(estimator))


class Deployed(nn.Module):
    """Raw rows in, the estimator's answer out: standardisation, network and ``output`` in one graph, its scales and
    ``output``'s in ``dtype``, the network's (which is left as it is)."""

    def __init__(self, model: nn.Module, x_mean: np.ndarray, x_scale: np.ndarray, output: nn.Module,
                 dtype: torch.dtype):
        super().__init__()
        self.model, self.output = model, output.to(dtype)
        self.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=dtype))
        self.register_buffer("x_scale", torch.as_tensor(x_scale, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.model((x - self.x_mean) / self.x_scale))


def _deployment_metadata(estimator) -> dict[str, str]:
    """What the exported graph carries beside it (its ``metadata_props``, strings; lists as JSON): the estimator,
    the network kept and the package version; the classifier's ``classes`` (the output columns' labels) and the
    feature names fit saw, in order, where it saw any."""
    listed = {"classes": "classes_", "feature_names": "feature_names_in_"}
    return {"estimator": type(estimator).__name__, "meta_neighborhoods": __version__,
            **({"selected": estimator.selected_} if hasattr(estimator, "selected_") else {}),
            **{key: json.dumps(to_json(getattr(estimator, name))) for key, name in listed.items()
               if hasattr(estimator, name)}}


class Rescale(nn.Module):
    """Standardised regression outputs back on the scale of y; a 1-D y gives 1-D answers, as ``predict`` does (its
    scales in float64 until ``Deployed`` gives them the network's dtype)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, flat: bool):
        super().__init__()
        self.flat = flat
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = y * self.scale + self.mean
        return y[:, 0] if self.flat else y


def export_run(run_dir, path, seed: int = 0, overwrite: bool = False) -> tuple[Path, float]:
    """The best network of a classify run as an ONNX graph, and its check (``max_difference`` on a random batch).

    The graph is written at ``path`` only once it has passed its check; a file already there is replaced only with
    ``overwrite``, and never one of the run's own files.

    Input: images (batch, C, height, width), float32, scaled to [0, 1] and normalised per channel with the mean and
    std of the run's training split, as in training (any height and width: the backbones end in global pooling; the
    network was trained at its data set's size). Output: the class logits (batch, classes) of the adapted predictor.
    """
    _require("onnx", "onnxscript", "onnxruntime")
    path = _destination(runs.run_folder(run_dir), path, overwrite)
    with reading(run_dir):  # not a run that classify is still writing: its checkpoint is replaced each epoch
        model, info = load_best_model(run_dir)
        metadata = run_metadata(run_dir, info["model_args"])
    channels = info["model_args"]["in_channels"]
    generator = torch.Generator().manual_seed(seed)
    example, check = (torch.randn(n, channels, CHECK_IMAGE_SIZE, CHECK_IMAGE_SIZE, generator=generator)
                      for n in (2, CHECK_BATCH))
    return path, write_checked(path, lambda scratch: export_onnx(model, example, scratch, IMAGES, metadata),
                               lambda candidate: max_difference(candidate, model, check), overwrite)


def _say_leftovers(folder: Path, name: str) -> None:
    """Name the scratch folders of other exports of ``name`` into ``folder``: one killed (SIGKILL runs no cleanup)
    leaves its folder. Said, not removed: it may be the folder of an export running now."""
    scratch = re.escape(f".{name}.") + "[a-z0-9_]{8}"  # tempfile's names of the folder export_run writes in
    for path in sorted(folder.iterdir()):
        if re.fullmatch(scratch, path.name) and path.is_dir() and not path.is_symlink():
            LOGGER.warning("%s: the scratch folder of an export of %s that was killed (or of one running now); "
                           "remove it once no export runs", path, name)


def _destination(run_dir, path, overwrite: bool) -> Path:
    """``path``, refused where it is one of the run's own files, or an existing file without ``overwrite``."""
    path, run_dir = Path(path), Path(run_dir)
    if run_dir.is_dir() and path.parent.resolve() == run_dir.resolve() and (
            path.name in holds_a_run(run_dir) or path.name == LOCK):  # the lock too: it keeps a second writer out
        raise FileExistsError(f"{path} is a file of the run being exported: choose another --out")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the ONNX graph to {path}: it is a directory")
    replaceable(path)  # never a device or a pipe, even with overwrite
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} already exists: replace it with --overwrite, or choose another --out")
    return path


def run_metadata(run_dir, model_args: dict) -> dict[str, str]:
    """The graph's ``metadata_props`` for a classify run: its classes and inputs (``run.json``), checked against the
    network of its best checkpoint, plus the method, backbone and package version, and the digest of the checkpoint's
    manifest, which names its weights by theirs (``checkpoint_sha256``)."""
    inputs, classes = read_inputs(run_dir)
    if (len(classes), inputs["channels"]) != (model_args["num_classes"], model_args["in_channels"]):
        raise RunFolderError(f"{run_dir}: run.json names {len(classes)} classes of {inputs['channels']}-channel "
                             f"images, but the best checkpoint's network has {model_args['num_classes']} outputs and "
                             f"{model_args['in_channels']} input channels: the folder's files disagree")
    return {"classes": json.dumps(classes), **{f"input_{name}": value if isinstance(value, str) else json.dumps(value)
                                               for name, value in inputs.items()},
            "method": model_args["method"], "backbone": model_args["backbone"], "meta_neighborhoods": __version__,
            "checkpoint_sha256": runs.best_sha256(run_dir)}
