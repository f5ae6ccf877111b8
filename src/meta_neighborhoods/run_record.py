"""``run.json``: what a run folder records beside its configuration, for a person and for a deployed model.

* ``provenance`` - ``provenance.provenance()`` of the process that started the run (versions, platform, git commit,
  command line), and ``resumed``: the same for each process that continued it (``classify --resume``);
* ``seeds`` - every seed the run draws from;
* ``input`` - what the network expects of its inputs: for images the layout, channels, the size it was trained at
  and the per-channel mean and std (inputs are ``(pixels / 255 - mean) / std``), and how the loader made those
  pixels where not as the files hold them (digits' counts scaled to 0..255, images resized; a record of an older
  version, which has none, is read as not recorded); for the spiral the per-feature standardisation;
* ``classes`` - the class names, in the order of the network's outputs.

``export`` writes ``input`` and ``classes`` into the ONNX graph's metadata, read back here (``read_inputs``) with
every field checked: a run folder is untrusted input (``runs.py``).
"""

from __future__ import annotations

from pathlib import Path

from .io import RunFolderError, read_json_object, write_json
from .provenance import provenance
from .validation import is_finite

RUN = "run.json"
IMAGE_TRANSFORM = "x = (pixels / 255 - mean) / std, per channel; float32, (batch, channels, height, width)"
OWN_PIXELS = "the data set's 8-bit pixels as its files hold them"
UNRECORDED_PIXELS = ("not recorded (a run of an older version): its loader made them then as now, digits' 0..16 "
                     "counts scaled to 0..255 and imagenet's images resized to 32 x 32")
MAX_PIXELS_TEXT = 300


def image_inputs(shape: tuple[int, ...], mean, std, pixels: str = "") -> dict:
    """``input`` of an image classifier trained on ``(N, C, H, W)`` images normalised with ``mean`` and ``std``;
    ``pixels``: how its loader made those 8-bit pixels, where not as the files hold them (digits' counts scaled,
    images resized), which a deployment must do too."""
    channels, height, width = (int(n) for n in shape[1:])
    return {"layout": "NCHW", "channels": channels, "height": height, "width": width, "scale": 255,
            "mean": [float(v) for v in mean], "std": [float(v) for v in std], "pixels": pixels or OWN_PIXELS,
            "transform": IMAGE_TRANSFORM}


def write_run_record(run_dir, record: dict, resume: bool = False) -> Path:
    """``run_dir/run.json`` with ``record`` (seeds, input, classes) and the provenance of this process: as the
    run's own for a new run, appended to ``resumed`` (the run's own kept) when it continues one."""
    path, now = Path(run_dir) / RUN, provenance()
    if not resume:
        return write_json(path, {"provenance": now, **record, "resumed": []})
    saved = read_json_object(path) if path.is_file() else {}  # an older version's run has none: start the record
    resumed = saved.get("resumed") if isinstance(saved.get("resumed"), list) else []
    return write_json(path, {"provenance": saved.get("provenance"), **record, "resumed": [*resumed, now]})


def _finite_list(value, length: int, positive: bool = False) -> bool:
    return (isinstance(value, list) and len(value) == length and all(
        type(v) in (int, float) and is_finite(v) and (v > 0 or not positive) for v in value))


def read_inputs(run_dir) -> tuple[dict, list[str]]:
    """(``input``, ``classes``) of an image run's ``run.json``, every field checked, or a RunFolderError naming
    the file (FileNotFoundError for a run of an older version, which recorded neither)."""
    path = Path(run_dir) / RUN
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: removed, or the run was written by an older version "
                                "of meta-neighborhoods that did not record it; train the run again")
    saved = read_json_object(path)
    inputs, classes = saved.get("input"), saved.get("classes")
    sizes = ("channels", "height", "width")
    if not (isinstance(inputs, dict) and all(type(inputs.get(n)) is int and 1 <= inputs[n] <= 1 << 16 for n in sizes)
            and inputs.get("scale") == 255 and inputs.get("layout") == "NCHW"
            and _finite_list(inputs.get("mean"), inputs["channels"])
            and _finite_list(inputs.get("std"), inputs["channels"], positive=True)
            and isinstance(inputs.get("pixels", ""), str) and len(inputs.get("pixels", "")) <= MAX_PIXELS_TEXT):
        raise RunFolderError(f"{path}: input should give the layout NCHW, scale 255, positive channels, height and "
                             f"width, a finite mean and a positive std per channel, and how its pixels were made "
                             f"(a text of at most {MAX_PIXELS_TEXT} characters; a run of an older version has none)")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)
            and len(set(classes)) == len(classes)):
        raise RunFolderError(f"{path}: classes should be a non-empty list of names, each once")
    shape = (0, *(inputs[n] for n in sizes))
    return image_inputs(shape, inputs["mean"], inputs["std"], inputs.get("pixels", UNRECORDED_PIXELS)), classes
