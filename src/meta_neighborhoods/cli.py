"""The command line: ``meta-neighborhoods <experiment> ...`` (also ``python -m meta_neighborhoods``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _spiral(args) -> int:
    from .experiments.spiral import SpiralConfig, run_spiral

    config = SpiralConfig(seed=args.seed, epochs=args.epochs, animation=not args.no_animation)
    metrics = run_spiral(args.out, config, device=args.device, progress=not args.quiet)
    accuracy = metrics["test_accuracy"]
    print(f"spiral test accuracy: vanilla {accuracy['vanilla']:.4f}, "
          f"meta-neighborhoods {accuracy['meta_neighborhoods']:.4f} ({metrics['seconds']:.1f} s); "
          f"wrote {args.out}/metrics.json, {', '.join(metrics['files'])}")
    return 0


def _check_target(args) -> None:
    """--target belongs to --data-file and to nothing else; say so rather than ignore it."""
    if args.data_file is not None and args.target is None:
        raise ValueError("--data-file needs --target COLUMN (the name of the target column in its header)")
    if args.data_file is None and args.target is not None:
        raise ValueError("--target only applies to --data-file")


def _table(args):
    """The table named by --dataset, or the CSV of --data-file with its --target column."""
    from .datasets.tables import load_csv_table, load_table

    _check_target(args)
    if args.data_file is not None:
        return load_csv_table(args.data_file, args.target)
    return load_table(args.dataset, args.data_dir)


def _regress(args) -> int:
    from .datasets.tables import available_tables
    from .experiments.regression import run_regression, run_regression_all

    options = {"folds": args.folds, "seed": args.seed, "search": args.search, "progress": not args.quiet,
               "estimator_params": {"device": args.device}}
    if args.dataset == "all":
        _check_target(args)
        run_regression_all(available_tables(), args.out, data_dir=args.data_dir, **options)
        print((Path(args.out) / "summary.md").read_text(), end="")
    else:
        run_regression(_table(args), args.out, **options)
        print((Path(args.out) / "results.md").read_text(), end="")
    return 0


def _ablate(args) -> int:
    from .experiments.regression import run_ablation

    run_ablation(_table(args), args.out, args.param, args.values, folds=args.folds, seed=args.seed,
                 progress=not args.quiet, estimator_params={"device": args.device})
    print((Path(args.out) / "ablation.md").read_text(), end="")
    return 0


CLASSIFY_DEFAULTS = {"epochs": 100, "batch_size": 128, "seed": 0, "key_init": "gaussian", "device": "auto"}
CLASSIFY_RUN_OPTIONS = ("dataset", "backbone", "method", "epochs", "batch_size", "seed", "train_subset", "key_init",
                        "dictionary_size", "out")


def _classify(args) -> int:
    from . import distributed
    from .experiments.classification import resume_classification, run_classification

    if args.resume is not None:
        given = [f"--{name.replace('_', '-')}" for name in CLASSIFY_RUN_OPTIONS if getattr(args, name) is not None]
        if given:
            raise ValueError(f"--resume continues a run with its saved configuration; drop {', '.join(given)}")
        out = Path(args.resume)
        result = resume_classification(out, device=args.device, progress=not args.quiet, data_dir=args.data_dir,
                                       cache_dir=args.cache_dir)
    else:
        missing = [f"--{name}" for name in ("dataset", "backbone", "method", "out") if getattr(args, name) is None]
        if missing:
            raise ValueError(f"classify needs {', '.join(missing)} (or --resume DIR to continue a run)")
        for name, default in CLASSIFY_DEFAULTS.items():
            setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
        out = Path(args.out)
        result = run_classification(
            args.dataset, args.backbone, args.method, out, args.epochs, batch_size=args.batch_size,
            train_subset=args.train_subset, data_dir=args.data_dir, cache_dir=args.cache_dir, device=args.device,
            seed=args.seed, progress=not args.quiet, dictionary_size=args.dictionary_size, key_init=args.key_init,
        )
    if not distributed.is_main():
        return 0
    if "methods" in result:
        print((out / "comparison.md").read_text(), end="")
    else:
        print(f"{result['dataset']} / {result['backbone']} / {result['method']}: test accuracy "
              f"{result['test_accuracy']:.4f} (best validation accuracy {result['validation_accuracy']:.4f} at epoch "
              f"{result['best_epoch']}, {result['seconds']:.1f} s); wrote {out}/metrics.json, config.json, "
              "checkpoints best and last")
    return 0


def _analyze(args) -> int:
    from .experiments.analysis import MAX_KEYS, run_analysis

    results = run_analysis(
        args.run_dir, args.what, out=args.out, data_dir=args.data_dir, cache_dir=args.cache_dir, samples=args.samples,
        seed=args.seed, device=args.device, keys_per_class=None if args.all_keys else args.keys_per_class,
        max_keys=None if args.all_keys else MAX_KEYS, progress=not args.quiet,
    )
    out = Path(args.out if args.out is not None else args.run_dir)
    lines = {
        "tsne": lambda r: (f"tsne: {r['train_images']} training features and {r['dictionary_size']} keys; keys whose "
                           f"nearest training feature shares their class: {r['key_nearest_same_class_share']:.3f} "
                           f"(feature space {r['key_nearest_same_class_share_feature_space']:.3f})"),
        "cosine": lambda r: (f"cosine: {r['test_images']} test images, {r['share_above_diagonal']:.3f} above the "
                             f"diagonal, mean cosine {r['mean_before']:.3f} -> {r['mean_after']:.3f}, accuracy "
                             f"{r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f}"),
        "retrieval": lambda r: (f"retrieval: {len(r['keys'])} keys x {r['config']['k']} nearest of "
                                f"{r['test_images']} test images, same class as the key: {r['same_class_share']:.3f}"),
    }
    for name, result in results.items():
        print(f"{lines[name](result)}; wrote {out / (name + '.png')}, {name}.json")
    return 0


def _export(args) -> int:
    from .export import CHECK_BATCH, export_run

    try:
        path, difference = export_run(args.run_dir, args.out)
    except ImportError as error:  # the optional export dependencies: say what to install, without a traceback
        raise RuntimeError(str(error)) from error
    print(f"wrote {path} ({args.format}): input 'input' = normalised images (batch, C, height, width), output "
          f"'output' = class logits of the adapted predictor; max |onnxruntime - PyTorch| = {difference:.2e} on a "
          f"random batch of {CHECK_BATCH}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meta-neighborhoods",
        description="Meta-Neighborhoods (Shan, Li, Oliva, NeurIPS 2020): experiments from the paper.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub, out_required=True):
        sub.add_argument("--out", required=out_required,
                         help="folder for metrics, configuration and figures (created if needed)")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                         help="where to train: auto = CUDA if available, else CPU (default auto)")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")

    spiral = commands.add_parser(
        "spiral", help="two-spiral toy of Sec. 4.1 / Fig. 3",
        description="Train a vanilla linear classifier and Meta-Neighborhoods (same linear head, 100 neighbours, "
                    "negative Euclidean similarity, T = 0.1) on two spirals; writes metrics.json, spiral.png and "
                    "spiral.gif (test predictions, neighbours coloured by value, their trajectories).",
    )
    common(spiral)
    spiral.add_argument("--epochs", type=int, default=300, help="training epochs of 1600 points (default 300)")
    spiral.add_argument("--no-animation", action="store_true", help="skip the GIF")
    spiral.set_defaults(run=_spiral)

    from .datasets.tables import available_tables

    def data_source(sub, allow_all: bool):
        names = available_tables() + (["all"] if allow_all else [])
        source = sub.add_mutually_exclusive_group(required=True)
        source.add_argument("--dataset", choices=names, metavar="NAME",
                            help=f"registered table: {', '.join(names)}"
                                 + (" (all = every one whose files are present)" if allow_all else ""))
        source.add_argument("--data-file", metavar="PATH",
                            help="any numeric CSV with a header row instead (its file stem names the data set)")
        sub.add_argument("--target", metavar="COLUMN", help="target column of --data-file (a header name)")
        sub.add_argument("--data-dir", metavar="PATH",
                         help="folder with the data files (default ../shared/data or $META_NEIGHBORHOODS_DATA; "
                              "gom defaults to the copy shipped with the package)")
        sub.add_argument("--folds", type=int, default=5, help="cross-validation folds, the same for every method (default 5)")

    regress = commands.add_parser(
        "regress", help="regression tables of Table 2: kNN, vanilla MLP, Meta-Neighborhoods, gradient boosting",
        description="k-fold MSE on the standardised target for kNN (k by inner CV), the vanilla MLP, "
                    "Meta-Neighborhoods (estimator defaults) and HistGradientBoosting, with paired t-tests of "
                    "Meta-Neighborhoods against each; writes results.json, results.md and folds.png "
                    "(with --dataset all: one folder per data set, summary.md and summary.json).",
    )
    common(regress)
    data_source(regress, allow_all=True)
    regress.add_argument("--search", action="store_true",
                         help="choose the MLP architecture per fold (2-5 layers x 32-256 units, inner 80/20 split) "
                              "for vanilla, and use it for Meta-Neighborhoods too")
    regress.set_defaults(run=_regress)

    ablate = commands.add_parser(
        "ablate", help="Meta-Neighborhoods' CV error against one of its parameters",
        description="k-fold MSE of Meta-Neighborhoods for each value of one parameter (the same folds for every "
                    "value, the other parameters at the estimator's defaults); writes ablation.json, ablation.md "
                    "and ablation.png.",
    )
    common(ablate)
    data_source(ablate, allow_all=False)
    ablate.add_argument("--param", required=True,  # not choices=: the list lives in experiments.regression (slow import)
                        help="parameter to vary: dictionary_size, temperature, inner_steps, step_size, similarity "
                             "or adapt")
    ablate.add_argument("--values", required=True, nargs="+", metavar="V",
                        help="values to try, e.g. 16 64 256 (temperature also takes 'none', the default)")
    ablate.set_defaults(run=_ablate)

    classify = commands.add_parser(
        "classify", help="image classification of Table 1: vanilla, vanilla+iFiLM, Meta-Neighborhoods, MN+iFiLM",
        description="Train one method (or all four) on an image data set with a cosine-classifier head: AdamW, "
                    "gradients clipped to +-10, learning rate x0.1 after 2/3 of the epochs, a seeded 10% validation "
                    "split (at most 5000 images) held out of the training set; the best-on-validation weights "
                    "(highest accuracy, ties to the lower validation loss) are kept in checkpoint best (best.json + "
                    "safetensors) and their test accuracy reported; the whole training state is saved after every "
                    "epoch in checkpoint last, from which --resume continues. "
                    "Writes metrics.json and config.json (with --method all: one folder per method, comparison.md "
                    "and comparison.json). Runs on several processes under torchrun (see the README).",
    )
    common(classify, out_required=False)
    classify.set_defaults(seed=None, device=None)  # None = not given (--resume takes the saved device)
    classify.add_argument("--resume", metavar="DIR",
                          help="continue the interrupted run in DIR with its saved configuration (only --device, "
                               "--quiet, --data-dir and --cache-dir may be given with it)")
    # Names are checked by the experiment, not choices=: the registries import torch, which slows --help.
    classify.add_argument("--dataset", metavar="NAME",
                          help="registered image data set, e.g. digits, mnist, cifar10, cifar100, svhn "
                               "(an unknown name lists them all)")
    classify.add_argument("--backbone", metavar="NAME",
                          help="feature extractor, e.g. convnet4, resnet29, resnet56, densenet40_bc "
                               "(an unknown name lists them all)")
    classify.add_argument("--method", metavar="METHOD",
                          help="vanilla (backbone + cosine head), vanilla_ifilm (iFiLM after every BatchNorm), "
                               "mn (Meta-Neighborhoods), mn_ifilm (both), or all (the four, into OUT/<method>/)")
    classify.add_argument("--epochs", type=int, help="training epochs (default 100)")
    classify.add_argument("--batch-size", type=int,
                          help="mini-batch size (default 128); under torchrun the global batch, split over processes")
    classify.add_argument("--train-subset", type=int, metavar="N",
                          help="train on N images of the training split only (seeded), for quick CPU runs")
    classify.add_argument("--key-init", choices=["gaussian", "samples"],
                          help="keys from N(0, 0.05^2) with random learned values, as the authors (default), or at "
                               "the features of random training images with their labels as values")
    classify.add_argument("--dictionary-size", type=int, metavar="S",
                          help="induced neighbours of mn and mn_ifilm (default 10 per class: 100 for 10-class sets)")
    classify.add_argument("--data-dir", metavar="PATH",
                          help="folder with the data files (default ../shared/data or $META_NEIGHBORHOODS_DATA)")
    classify.add_argument("--cache-dir", metavar="PATH",
                          help="where decoded images are cached (default $META_NEIGHBORHOODS_CACHE or "
                               "~/.cache/meta_neighborhoods)")
    classify.set_defaults(run=_classify)

    analyze = commands.add_parser(
        "analyze", help="figures 4-6 of a classify run: t-SNE of keys, cosine before/after finetuning, retrieval",
        description="Reload a Meta-Neighborhoods classify run (its best checkpoint and data set; vanilla runs have no "
                    "dictionary and are refused) and write, next to each PNG, a JSON file with its numbers: "
                    "tsne (Fig. 5: keys among training features, t-SNE, keys coloured by their value's class), "
                    "cosine (Fig. 4: cosine of each test feature to its true class prototype before vs after the "
                    "per-input finetuning, share above the diagonal, accuracy before vs after), retrieval "
                    "(Fig. 6 / A.8: the 5 nearest test images of learned neighbours, 2 per value class, at most 20).",
    )
    analyze.add_argument("--run", dest="run_dir", required=True, metavar="DIR",  # args.run is the handler
                         help="folder of one classify run (with --method all: OUT/mn or OUT/mn_ifilm)")
    analyze.add_argument("--what", required=True, choices=["tsne", "cosine", "retrieval", "all"],
                         help="which analysis to run (all = the three)")
    analyze.add_argument("--out", metavar="DIR", help="where to write PNG and JSON files (default: the run folder)")
    analyze.add_argument("--data-dir", metavar="PATH", help="folder with the data files (default: the run's)")
    analyze.add_argument("--cache-dir", metavar="PATH", help="where decoded images are cached (default: the run's)")
    analyze.add_argument("--samples", type=int, metavar="N",
                         help="training images for tsne (default 2000), test images for cosine and retrieval "
                              "(default all); a seeded sample")
    analyze.add_argument("--keys-per-class", type=int, default=2, metavar="K",
                         help="retrieval: most confident keys per value class (default 2; at most 20 rows)")
    analyze.add_argument("--all-keys", action="store_true", help="retrieval: one row for every key instead")
    analyze.add_argument("--seed", type=int, default=0, help="seed of the samples and of t-SNE (default 0)")
    analyze.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                         help="where to compute features: auto = CUDA if available, else CPU (default auto)")
    analyze.add_argument("--quiet", action="store_true", help="no progress messages")
    analyze.set_defaults(run=_analyze)

    export = commands.add_parser(
        "export", help="a classify run's best network as one ONNX graph, to deploy without Python",
        description="Export the best checkpoint of a classify run as a single ONNX graph: backbone (with iFiLM), "
                    "attention over the dictionary, the inner finetuning steps and the cosine head, for onnxruntime "
                    "or any ONNX runtime. Input 'input': float32 images (batch, C, height, width), scaled to [0, 1] "
                    "and normalised with the per-channel mean and std of the run's training split, as in training "
                    "(batch, height and width are free). Output 'output': class logits (batch, classes). The graph "
                    "is checked against PyTorch on a random batch and the largest difference printed.",
    )
    export.add_argument("--run", dest="run_dir", required=True, metavar="DIR",  # args.run is the handler
                        help="folder of one classify run (with --method all: OUT/<method>)")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="file format (default onnx, the only one)")
    export.add_argument("--out", required=True, metavar="FILE", help="file to write, e.g. model.onnx")
    export.set_defaults(run=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, RuntimeError, FloatingPointError) as error:
        print(f"meta-neighborhoods {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
