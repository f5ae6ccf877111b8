"""``meta-neighborhoods export``: a classify run's best network as one ONNX graph."""

from __future__ import annotations

import logging

from .common import path, verbosity

LOGGER = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="a classify run's best network, or a fit's estimator, as one ONNX graph, to deploy without "
                       "Python",
        parents=[verbosity("warnings and errors only")],
        description="Export the estimator of a fit folder (meta-neighborhoods fit) as a single ONNX graph: input "
                    "'input', float32 rows (batch, features) as the table holds them, in the order of the "
                    "estimator's features (the graph standardises them); output 'output', the regressor's "
                    "predictions or the classifier's class probabilities (feature and class names in its "
                    "metadata), checked against the estimator on random rows. "
                    "Or export the best checkpoint of a classify run as a single ONNX graph: backbone (with iFiLM), "
                    "attention over the dictionary, the inner finetuning steps and the cosine head, for onnxruntime "
                    "or any ONNX runtime. Input 'input': float32 images (batch, C, height, width), scaled to [0, 1] "
                    "and normalised with the per-channel mean and std of the run's training split, as in training "
                    "(batch, height and width are free). Output 'output': class logits (batch, classes). The "
                    "graph's metadata (metadata_props) carries the class names (classes) and the inputs' recipe "
                    "(input_layout, input_channels, input_height, input_width, input_scale, input_mean, input_std, "
                    "input_pixels: how the loader made the 8-bit pixels where not as the files hold them, such as "
                    "digits' counts scaled to 0..255 or images resized, and input_transform) from the run's "
                    "run.json. The graph is checked against PyTorch on a random batch and the largest difference "
                    "printed.",
    )
    parser.add_argument("--run", dest="run_dir", type=path, required=True, metavar="DIR",  # args.run is the handler
                        help="folder of one classify run (with --method all: OUT/<method>), or a saved estimator: "
                             "a fit's folder, or a checkpoint save wrote")
    parser.add_argument("--format", choices=["onnx"], default="onnx",
                        help="file format (default %(default)s, the only one)")
    parser.add_argument("--out", type=path, required=True, metavar="FILE", help="file to write, e.g. model.onnx")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never a file of the run)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..experiments.final_model import export_fit, means_model
    from ..export import CHECK_BATCH, export_run

    try:
        if means_model(args.run_dir):  # else a classify run
            done = export_fit(args.run_dir, args.out, overwrite=args.overwrite)
            path, answers = done["path"], ("the classifier's class probabilities, in the order of its metadata's "
                                           "classes" if done["classifier"] else "the regressor's predictions")
            said = (f"raw rows (batch, features), output 'output' = {answers}; max |onnxruntime - estimator| = "
                    f"{done['difference']:.2e} (float32; the largest answer is {done['largest']:.3g})")
        else:
            path, difference = export_run(args.run_dir, args.out, overwrite=args.overwrite)
            said = ("normalised images (batch, C, height, width), output 'output' = class logits of the run's best "
                    "network (normalisation, pixel recipe and class names in its metadata); max |onnxruntime - "
                    f"PyTorch| = {difference:.2e}")
    except ImportError as error:  # the optional export dependencies: say what to install, without a traceback
        raise RuntimeError(str(error)) from error
    print(f"{path} ({args.format}): input 'input' = {said} on a random batch of {CHECK_BATCH}")
    if Path(args.out).suffix.lower() != f".{args.format}":  # model.pt would read as a PyTorch file
        LOGGER.warning("%s: an ONNX graph is written there, whatever its name says (onnxruntime reads it)", args.out)
    LOGGER.info("wrote %s", path)
    return 0
