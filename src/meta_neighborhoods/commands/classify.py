"""``meta-neighborhoods classify``: image classification of Table 1, a new run or ``--resume`` of one.

The run options default to None so that ``--resume`` can tell which were given (and refuse them: a resumed
run keeps its saved configuration); a new run passes on those given, and ``ClassificationConfig`` supplies
the defaults of the rest (its defaults are the ones ``--help`` shows).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from ..config import (AUGMENTATIONS, GRAD_CLIP, KEY_INITS, NEIGHBOURS_PER_CLASS, PATH_FIELDS, RUN_DEFAULTS,
                      VALIDATION_FRACTION, VALIDATION_MAX, ClassificationConfig as Defaults)
from ..presets import PAPER_BUDGETS, PRESETS
from ..run_files import COMPARISON_JSON, COMPARISON_MD, CONFIG, METRICS
from ..validation import ConfigError
from .common import (UsageError, add_optimiser_options, add_threads, data_folders, device, output, overwrite, parent,
                     path, same_fixed_settings, seed, verbosity)

CLASSIFY_RUN_OPTIONS = ("dataset", "backbone", "method", "epochs", "batch_size", "seed", "train_subset", "key_init",
                        "dictionary_size", "psi", "learning_rate", "weight_decay", "lr_drop_at", "augment",
                        "image_size", "preset", "threads", "out", "overwrite")
REQUIRED = ("dataset", "backbone", "method", "out")
RECORDED = {name: default for name, default in RUN_DEFAULTS.items() if name not in PATH_FIELDS}  # in a record
CROP_FLIP = ("cifar10", "cifar100", "cinic10")  # the data sets whose own augmentation it is (datasets/images.py)
LOGGER = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify", help="image classification of Table 1: vanilla, MAXL, vanilla+iFiLM, Meta-Neighborhoods, MN+iFiLM",
        parents=[output(required=False), overwrite("before training: a new run that fails leaves only its own"),
                 seed(None, help=f"random seed (default {Defaults.seed})"), device(default=None, shown=Defaults.device),
                 verbosity(), _configuration(), data_folders()],
        description="Train one method (or all five) on an image data set with a cosine-classifier head: AdamW, "
                    f"gradients clipped to +-{GRAD_CLIP:g}, learning rate x0.1 after 2/3 of the epochs "
                    f"(--lr-drop-at), a seeded {VALIDATION_FRACTION:.0%} validation split (at most {VALIDATION_MAX} "
                    "images) held out of the training set; the best-on-validation weights (highest accuracy, ties "
                    "to the lower validation loss) are kept in checkpoint best (best.json + safetensors) and their "
                    "test accuracy reported; the whole training state is saved after every "
                    "epoch in checkpoint last, from which --resume continues. "
                    "Writes metrics.json, a row per epoch in metrics.csv (and TensorBoard events in tensorboard/ "
                    "when TensorBoard is installed), config.json, run.json (provenance, seeds, the inputs and "
                    "classes an exported model expects) and split.json (the images trained and validated on, and "
                    "their normalisation); with --method all: one folder per method, comparison.md "
                    "and comparison.json. Runs on several processes under torchrun (see the README).",
    )
    parser.set_defaults(run=run)


def _configuration():
    """--resume and the configuration of a new run, between --quiet and the data folders in --help."""
    parser = parent()
    parser.add_argument("--resume", type=path, metavar="DIR",
                        help="continue the interrupted run in DIR with its saved configuration (only --device, "
                             "--quiet, -v, --data-dir and --cache-dir may be given with it)")
    # Names are checked by the experiment, not choices=: the registries import torch, which slows --help.
    parser.add_argument("--dataset", metavar="NAME",
                        help="registered image data set, e.g. digits, mnist, cifar10, cifar100, svhn "
                             "(an unknown name lists them all)")
    parser.add_argument("--backbone", metavar="NAME",
                        help="feature extractor, e.g. convnet4, resnet29, resnet56, densenet40_bc "
                             "(an unknown name lists them all)")
    parser.add_argument("--method", metavar="METHOD",
                        help="vanilla (backbone + cosine head), maxl (vanilla trained with meta-learned auxiliary "
                             "labels, MAXL), vanilla_ifilm (iFiLM after every BatchNorm), mn (Meta-Neighborhoods), "
                             "mn_ifilm (both), or all (the five, into OUT/<method>/)")
    parser.add_argument("--epochs", type=int, help=f"training epochs (default {Defaults.epochs})")
    parser.add_argument("--batch-size", type=int,
                        help=f"mini-batch size (default {Defaults.batch_size}); under torchrun the "
                             "global batch, split over processes")
    add_optimiser_options(parser, f"default {Defaults.learning_rate:g}", f"default {Defaults.weight_decay:g}")
    parser.add_argument("--train-subset", type=int, metavar="N",
                        help="train on N images of the training split only (seeded): shorter epochs; validation (up to "
                             f"{VALIDATION_MAX:,} images) and the test split keep their full size")
    parser.add_argument("--key-init", choices=KEY_INITS,
                        help="gaussian (the default, as the authors): keys from N(0, 0.05^2) with random learned "
                             "values; samples: at the features of random training images, their labels as values")
    parser.add_argument("--dictionary-size", type=int, metavar="S",
                        help=f"induced neighbours of mn and mn_ifilm (default {NEIGHBOURS_PER_CLASS} per class: "
                             f"{NEIGHBOURS_PER_CLASS * 10} for 10-class sets)")
    parser.add_argument("--psi", type=int, metavar="PSI",
                        help=f"maxl: auxiliary classes per class, at least 2 (default {Defaults.psi}, as MAXL's code)")
    parser.add_argument("--lr-drop-at", type=float, metavar="SHARE",
                        help=f"share of the epochs after which the learning rate drops tenfold (default "
                             f"{Defaults.lr_drop_at:.3g})")
    parser.add_argument("--augment", choices=AUGMENTATIONS,
                        help=f"augmentation of the training images: the data set's own (default; crop and flip "
                             f"for {', '.join(CROP_FLIP)}, none for the others, the digit sets among them: a flipped "
                             "digit is another digit) or the authors' pipeline, paper: crop, flip, AutoAugment's "
                             "CIFAR-10 policy and Cutout of 16 x 16 squares, for images larger than that")
    parser.add_argument("--image-size", type=int, metavar="PX",
                        help="resize every image to PX x PX pixels (Pillow's BOX filter) for the data sets of images "
                             "of any size: cinic10, tiny_imagenet, pacs and imagenet (default: their own size; "
                             "imagenet 32)")
    add_threads(parser, "Training sums in an order that depends on them: the run records the count it ran on, and "
                        "--resume and --config runs use it again")
    parser.add_argument("--preset", choices=PRESETS,
                        help=f"paper: the authors' protocol for the data set ({', '.join(PAPER_BUDGETS)}): their "
                             "budget in steps as epochs, learning-rate drop, batch 128, weight decay, 100 neighbours "
                             "per class, --augment paper; options given here win over it (see presets.py)")
    return parser


def check_options(args) -> None:
    """--resume takes none of the run options; a new run needs the four without a default."""
    if args.resume is not None:
        if args.config is not None:
            raise UsageError("--resume continues a run with its saved configuration; it takes no --config")
        given = [f"--{name.replace('_', '-')}" for name in CLASSIFY_RUN_OPTIONS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"--resume continues a run with its saved configuration; drop {', '.join(given)}")
        return
    missing = [f"--{name}" for name in REQUIRED if getattr(args, name) is None]
    if missing:
        raise UsageError(f"classify needs {', '.join(missing)} (or --resume DIR to continue a run)")


def run(args) -> int:
    check_options(args)  # before the imports: a usage error needs no torch
    from .. import distributed
    from ..experiments.classification import resume_classification, run_classification

    folders = {"data_dir": args.data_dir, "cache_dir": args.cache_dir}
    out = Path(args.resume if args.resume is not None else args.out)
    recorded = _recorded_run(args)
    _say_recorded_folders(args)
    if recorded.get("processes", distributed.world_size()) != distributed.world_size() and distributed.is_main():
        LOGGER.warning("%s: its run trained on %d process(es), this rerun on %d, as launched: its batches are split "
                       "otherwise, so its results will differ (launch it on %d to rerun it as it ran)",
                       recorded["record"], recorded["processes"], distributed.world_size(), recorded["processes"])
    try:
        if args.resume is not None:
            result = resume_classification(out, device=args.device, progress=not args.quiet, **folders)
        else:
            given = _without_unused({name: getattr(args, name) for name in (*CLASSIFY_RUN_OPTIONS, "device", *folders)
                                     if name not in REQUIRED and getattr(args, name) is not None}, args)
            result = run_classification(args.dataset, args.backbone, args.method, out, progress=not args.quiet,
                                        recorded=recorded.get("images"), **given)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (cli.Terminated)
        raise type(interrupt)(_how_to_continue(out, folders)) from None
    except RuntimeError as error:  # a process of torchrun's killed, or failed: the others' collectives fail
        lost = distributed.lost_peer(error)
        if lost is None:
            raise
        raise RuntimeError(f"another process of the run stopped ({lost}); {_how_to_continue(out, folders)}") from None
    if distributed.is_main():
        _report(result, out)
        if args.resume is not None and result.get("resumed") is False:  # one method, its epochs all done before
            LOGGER.info("%s had finished training: nothing was left to train, its best network was tested again", out)
    return 0


def _how_to_continue(out: Path, folders: dict) -> str:
    """What an interrupted run can do next: --resume from its last checkpoint (with the data and cache ``folders``
    it was given, which a run folder never records), with as many processes as it ran on, or, before its first
    epoch ended, only start again: its own command line, with --overwrite."""
    from .. import distributed
    from ..provenance import command, launcher
    from ..runs import resumable

    if not resumable(out):
        again = command()
        return ("no epoch had finished, so no checkpoint is kept; start again with: "
                + shlex.join(again if "--overwrite" in again else [*again, "--overwrite"]))
    given = "".join(f" --{name.replace('_', '-')} {shlex.quote(str(path))}" for name, path in folders.items()
                    if path is not None)
    resume, processes = f"classify --resume {shlex.quote(str(out))}{given}", distributed.world_size()
    if processes > 1:
        return (f"the last checkpoint is kept; continue on {processes} processes in all, as it ran: torchrun ... "
                f"-m meta_neighborhoods {resume}")
    return f"the last checkpoint is kept; continue with: {shlex.join(launcher())} {resume}"


def _report(result: dict, out: Path) -> None:
    """The result on stdout: one line for a single method, the comparison table for --method all; the files
    written as a message."""
    if "methods" in result:
        print((out / COMPARISON_MD).read_text(), end="")
        LOGGER.info("wrote %s/%s, %s, %s, run.json and a folder per method", out, COMPARISON_MD, COMPARISON_JSON,
                    CONFIG)
        return
    print(f"{result['dataset']} / {result['backbone']} / {result['method']}: test accuracy "
          f"{result['test_accuracy']:.4f} (best validation accuracy {result['validation_accuracy']:.4f} at epoch "
          f"{result['best_epoch']}); trained in {result['seconds']:.1f} s")
    LOGGER.info("wrote %s/metrics.json, metrics.csv, config.json, run.json, split.json, checkpoints best and last",
                out)


def _without_unused(given: dict, args) -> dict:
    """The settings ``given``, less those the --config file gave that the method chosen on the command line does not
    use: one method of a record's run (which gives its own method's settings) is rerun as another. Where the file
    chose the method too, such a setting is its own mistake, and refused."""
    from ..image_methods import METHOD_NAMES, unused_settings

    from_file = getattr(args, "config_gave", {})
    if "method" in from_file or args.method not in METHOD_NAMES:  # an unknown one: the run refuses it by name
        return given
    unused = unused_settings(args.method)
    return {name: value for name, value in given.items() if name not in unused or name not in from_file}


def _say_recorded_folders(args) -> None:
    """Name the data and cache folders a --config record's run was given that this rerun is not: a record never
    gives folders, and a rerun without them looks where the defaults say (a data set missing there was refused
    without naming where the run had found it)."""
    record, saved = getattr(args, "config_record", None), getattr(args, "config_recorded", None) or {}
    saved = saved.get("config", saved)  # a metrics.json or comparison.json holds its run's config.json
    saved = saved if isinstance(saved, dict) else {}
    for name in ("data_dir", "cache_dir"):
        if isinstance(saved.get(name), str) and getattr(args, name) is None:
            LOGGER.info("%s: its run was given --%s %s, which a record never gives: give it again to read there",
                        record, name.replace("_", "-"), saved[name][:200])


def _recorded_run(args) -> dict:
    """What the run.json beside a --config record says of its run, which its options do not: the processes it trained
    on, and, where this rerun trains on its data set at its image size, the channel statistics of its images (checked
    once they are loaded); none for a file of options, nor for a record whose run.json is not beside it (said)."""
    from ..io import read_json_object
    from ..run_record import RUN, read_inputs
    from ..validation import is_int

    record = getattr(args, "config_record", None)
    if record is None or not (record.parent / RUN).is_file():
        if record is not None:
            LOGGER.warning("%s has no %s beside it (a run of an older version, or a record copied from its run "
                           "folder): this rerun is not checked against its run's images and processes", record, RUN)
        return {}
    saved, gave = read_json_object(record.parent / RUN), getattr(args, "config_gave", {})
    processes = saved.get("processes")
    recorded = {"record": record, **({"processes": processes} if is_int(processes) and processes >= 1 else {})}
    if saved.get("dataset") == args.dataset and "dataset" in gave and (args.image_size is None or "image_size" in gave):
        inputs = read_inputs(record.parent)[0]
        recorded["images"] = {"record": record, "mean": inputs["mean"], "std": inputs["std"]}
    return recorded


RECORDS = (CONFIG, METRICS, COMPARISON_JSON)  # what options_from_record reads


def options_from_record(record: dict) -> dict:
    """The options of the classify run whose config.json (or metrics.json, comparison.json) ``record`` is, for
    --config; a record of fixed choices (``fixed_choices``) other than today's is refused. Not its data folders
    (paths are never taken from a run folder), nor a setting at its default (the new run gets that again), nor one
    the run's method does not use (earlier versions recorded a --preset's or a --method all run's dictionary size
    for every method; given on the command line, such a setting is refused)."""
    config = record.get("config", record)
    if not (isinstance(config, dict) and "backbone" in config):
        raise ConfigError("not the config.json, metrics.json or comparison.json of a classify run")
    from ..experiments.classification import fixed_choices  # here: torch only once a record is read
    from ..image_methods import METHOD_NAMES, unused_settings

    version = config.get("version")
    same_fixed_settings(config, fixed_choices(config.get("method")),
                        f"version {version}" if isinstance(version, str) else None)
    unused = unused_settings(config["method"]) if config.get("method") in METHOD_NAMES else {}  # an older run's
    return {name: config[name] for name, default in RECORDED.items()
            if name in config and config[name] != default and name not in unused}
