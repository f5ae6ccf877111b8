"""Options several commands share, as argparse parent parsers, and the helpers that read them.

Each function returns a fresh parent parser (``add_help=False``) for ``parents=[...]``; its parameters
carry the help text or default where one command differs from the others, so that every command keeps
its own wording. Parents are added in the order the options appear in ``--help``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ..config import DEVICES, ESTIMATOR, FIELDS, HEADS, MAX_WEIGHTS, SLOT_DRAWS, MNConfig
from ..datasets.tables import available_tables
from ..validation import NONE, ConfigError, check_int, check_threads
from .config_file import float_or_none, int_or_none, path


# estimator parameters with an option of the same name in regress and ablate
ESTIMATOR_OPTIONS = ("max_epochs", "n_iter_no_change", "learning_rate", "weight_decay", "batch_size", "refine_factor",
                     "hidden_layer_sizes", "head", "dictionary_size", "top_k", "slot_dropout", "slot_draw",
                     "vanilla_fallback")  # the last: regress's
READ_BY_DEFAULT = {"encoding": "utf-8", "separator": "comma", "decimal": "point"}  # a CSV file's, unless told
CSV_OPTIONS = ("target", "encoding", "separator", "decimal", "ignore_columns")  # a --data-file run's, recorded
NONE_OPTIONS = ("top_k", "refine_factor")  # options whose value None is spelt NONE ("none"): None is "not given"


class UsageError(Exception):
    """Options that parse but do not go together; the command line reports it as a usage error (status 2)."""


def parent() -> argparse.ArgumentParser:
    """A parser that only carries options: the sub-command that takes it as a parent owns --help."""
    return argparse.ArgumentParser(add_help=False)


def output(required: bool = True, metavar: str | None = None,
           help: str = "folder for metrics, configuration and figures (created if needed)") -> argparse.ArgumentParser:
    """--out, the folder a command writes to."""
    parser = parent()
    parser.add_argument("--out", type=path, required=required, metavar=metavar, help=help)
    return parser


def overwrite(when: str = "once the new run has its results") -> argparse.ArgumentParser:
    """--overwrite: a new run refuses a folder that holds an earlier run's results without it; ``when`` the earlier
    run's files go. Its default None means "not given", so that classify --resume can refuse it."""
    parser = parent()
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help=f"replace the run already in --out (its files only, removed {when}); without it such a "
                             "folder is refused")
    return parser


def seed(default: int | None = 0, help: str = "random seed (default %(default)s)") -> argparse.ArgumentParser:
    """--seed; classify's default None means "not given", so that --resume can refuse it."""
    parser = parent()
    parser.add_argument("--seed", type=int, default=default, help=help)
    return parser


def device(task: str = "train", default: str | None = "auto", shown: str = "auto") -> argparse.ArgumentParser:
    """--device; classify's default None means "not given" (--resume then takes the saved device)."""
    parser = parent()
    parser.add_argument("--device", choices=DEVICES, default=default,
                        help=f"where to {task}: auto = CUDA if available, else CPU (default {shown})")
    return parser


def verbosity(quiet_help: str = "warnings and errors only, no progress bars") -> argparse.ArgumentParser:
    """--quiet or -v/--verbose: the level of the messages on stderr (the CLI sets it; INFO without either)."""
    parser = parent()
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help=quiet_help)
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    return parser


def run_options() -> list[argparse.ArgumentParser]:
    """--out, --overwrite, --seed, --device, --quiet and --verbose, the first options of every training command."""
    return [output(), overwrite(), seed(), device(), verbosity()]


def add_optimiser_options(parser: argparse.ArgumentParser, learning_rate: str, weight_decay: str) -> None:
    """--learning-rate and --weight-decay of AdamW, with the defaults the help shows; None = not given."""
    parser.add_argument("--learning-rate", type=float, metavar="LR", help=f"AdamW's learning rate ({learning_rate})")
    parser.add_argument("--weight-decay", type=float, metavar="WD", help=f"AdamW's weight decay ({weight_decay})")


def add_threads(parser: argparse.ArgumentParser,
                why: str = "Training sums in an order that depends on them: the run records the count it ran on, and "
                           "--config reruns on as many") -> None:
    """--threads of every training command: torch's CPU threads, which its results depend on; None = not given."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help=f"torch's CPU threads (default: torch's choice). {why}")


def data_folders(
    data_help: str = "folder with the data files (default ../shared/data or $META_NEIGHBORHOODS_DATA; never a "
                     "path stored in a run folder)",
    cache_help: str = "where decoded images are cached (default $META_NEIGHBORHOODS_CACHE or "
                      "~/.cache/meta_neighborhoods; never a path stored in a run folder)",
) -> argparse.ArgumentParser:
    """--data-dir and --cache-dir, where image data sets are read and their decoded images cached. A run folder
    may record them, but a resumed run or an analysis takes them from here or the defaults (runs.py)."""
    parser = parent()
    parser.add_argument("--data-dir", type=path, metavar="PATH", help=data_help)
    parser.add_argument("--cache-dir", type=path, metavar="PATH", help=cache_help)
    return parser


def check_data_dir(data_dir) -> None:
    """A --data-dir given must be a folder: a mistyped one would otherwise fall back to the shipped copies (gom,
    digits) or, for --dataset all, skip every table it should hold, and the run would succeed on other data."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a folder")


def estimator_options() -> argparse.ArgumentParser:
    """The training settings regress and ablate pass to the MLP estimators; not given: the estimator's default."""
    parser = parent()
    add_optimiser_options(parser, f"default {ESTIMATOR.learning_rate:g}, the estimator's",
                          f"default {ESTIMATOR.weight_decay:g}, the estimator's")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help=f"mini-batch size (default {ESTIMATOR.batch_size}, the estimator's)")
    parser.add_argument("--refine-factor", type=float_or_none, metavar="F",
                        help="a second phase of training, from the weights early stopping kept, at F times the "
                             f"learning rate (0.1, say), or '{NONE}' (the estimator's default): one phase")
    parser.add_argument("--hidden-layer-sizes", type=int, nargs="+", metavar="W",
                        help="widths of the MLP's hidden layers, for every MLP the run trains (default "
                             f"{' '.join(map(str, ESTIMATOR.hidden_layer_sizes))}, the estimator's; at most "
                             f"{MAX_WEIGHTS:,} weights in all)")
    parser.add_argument("--head", choices=HEADS,
                        help="the network of every MLP the run trains: 'mlp' (the default), or 'periodic', the MLP on "
                             "periodic embeddings of each feature (Gorishniy et al. 2022)")
    parser.add_argument("--dictionary-size", type=int, metavar="S",
                        help=f"induced neighbours of Meta-Neighborhoods (default {ESTIMATOR.dictionary_size}, the "
                             "estimator's, at most one per training row; vanilla has none)")
    parser.add_argument("--top-k", type=int_or_none, metavar="K",
                        help=f"attend to the K most similar keys only, or '{NONE}' to every key (default "
                             f"{ESTIMATOR.top_k}, the estimator's)")
    parser.add_argument("--slot-dropout", type=float, metavar="P",
                        help=f"share of the dictionary hidden from each training example (default "
                             f"{ESTIMATOR.slot_dropout:g}, the estimator's)")
    parser.add_argument("--slot-draw", choices=SLOT_DRAWS,
                        help="slot dropout drawn for each example or once per batch, which leaves the hidden keys out "
                             f"of the step (default {MNConfig.slot_draw}, the estimator's)")
    return parser


def fit_options(args) -> dict:
    """The keyword arguments regress and ablate both pass to their experiment, checked before any work."""
    check_int("--seeds", args.seeds, maximum=2**32)  # seed + repeat is below 2**32: see protocol_options
    return {"folds": args.folds, "seeds": args.seeds, **training_options(args)}


def training_options(args) -> dict:
    """The keyword arguments of regress, ablate and fit for the rows and the estimator, checked before any work."""
    if args.max_rows is not None:
        check_int("--max-rows", args.max_rows)
    check_threads("--threads", args.threads)
    params = {name: getattr(args, name) for name in ESTIMATOR_OPTIONS if getattr(args, name, None) is not None}
    params.update({name: None for name in NONE_OPTIONS if params.get(name) == NONE})
    _check_estimator_params(params)
    return {"seed": args.seed, "max_rows": args.max_rows, "threads": args.threads, "overwrite": bool(args.overwrite),
            "progress": not args.quiet, "estimator_params": {"device": args.device, **params}}


def vanilla_fallback() -> argparse.ArgumentParser:
    """--no-vanilla-fallback of regress and fit: the estimator's choice between its two networks, turned off."""
    parser = parent()
    parser.add_argument("--no-vanilla-fallback", dest="vanilla_fallback", action="store_const", const=False,
                        help="always keep Meta-Neighborhoods' network, as the paper does, instead of the estimator's "
                             "default: keep the vanilla network trained on the same rows where it validates better")
    return parser


def _check_estimator_params(params: dict) -> None:
    """The estimators' own checks (``check_settings``, ``MNConfig``, the method's own settings) of the settings
    given, with the estimator's defaults for the rest, before any work; a setting refused is named as its option is
    spelt (--learning-rate, --slot-dropout)."""
    from ..estimator_settings import check_settings  # imports scikit-learn and torch: not for --help
    from ..estimators import MetaNeighborhoodsRegressor

    try:
        check_settings(MetaNeighborhoodsRegressor(**params))  # every other parameter at the estimator's default
        MNConfig(**{name: value for name, value in params.items() if name in FIELDS})
    except ConfigError as error:
        if error.setting not in params or not str(error).startswith(error.setting):
            raise
        option, said = "--" + error.setting.replace("_", "-"), str(error).removeprefix(error.setting)
        if error.setting in NONE_OPTIONS:  # the option spells None so
            said = said.replace("None", repr(NONE))
        raise ConfigError(option + said, option) from None


def table_run_options(record: dict) -> dict:
    """The options of the regress or ablate run whose results.json or ablation.json ``record`` is: its protocol,
    the estimator settings it was given, and its table when registered, else its CSV's target column (a
    --data-file's path is not recorded: the file is given again, read in the encoding recorded)."""
    config = record.get("config")
    if not (isinstance(config, dict) and isinstance(config.get("estimator_params"), dict)):
        raise ConfigError("not the results.json or ablation.json of a regress or ablate run")
    options = {key: config[key] for key in ("folds", "seed", "seeds", "max_rows", "threads", "search", "table_sha256",
                                            "task") if key in config}  # threads: checked as --threads is
    if "threads" not in config and isinstance(config.get("provenance"), dict) and "threads" in config["provenance"]:
        options["threads"] = config["provenance"]["threads"]  # a record from before runs recorded it as a setting
    if "target" in config:  # a --data-file's, even one named like a registered table (boston.csv)
        options.update({key: config[key] for key in CSV_OPTIONS if key in config})
    elif isinstance(record.get("dataset"), str) and record["dataset"] in available_tables():
        options["dataset"] = record["dataset"]
    factories = [name for name in ("head", "extractor") if name in config["estimator_params"]
                 and config["estimator_params"][name] not in HEADS]  # a head the package ships is a name
    if factories:  # recorded by name (experiments/table_records.recorded): code, which a record cannot carry
        shown = str(config["estimator_params"][factories[0]])[:80]
        raise ConfigError(f"its run was given a {factories[0]} factory ({shown}), which a record cannot rerun: call "
                          "run_table or run_ablation with it")
    unknown = sorted(set(config["estimator_params"]) - {*ESTIMATOR_OPTIONS, "device"}, key=str)
    if unknown:  # a record gives settings, never paths or --overwrite
        raise ConfigError(f"its estimator_params hold settings no run records ({', '.join(unknown)[:80]}); expected "
                          f"some of {', '.join(ESTIMATOR_OPTIONS)}, device")
    params = {**_recorded_defaults(config, record), **config["estimator_params"]}
    params.update({name: NONE for name in NONE_OPTIONS if name in params and params[name] is None})  # else: not given
    fallback = params.pop("vanilla_fallback", True)  # its option is --no-vanilla-fallback
    if not isinstance(fallback, bool):
        raise ConfigError(f"its estimator settings give vanilla_fallback = {fallback!r:.40}, not true or false")
    return {**options, **params, **({"no_vanilla_fallback": True} if not fallback else {})}


def same_fixed_settings(recorded: dict, today: dict, made_by: str | None = None, unset: bool = False) -> None:
    """Refuse the rerun of a run whose record says it trained with settings no option sets (``today``: their values
    now) at other values: a rerun here would train otherwise, silently. ``unset``: a setting the record lacks differs
    too (a record that holds them all); else it is one added since, whose default kept what runs did before it.
    ``made_by``: what the record names as its maker ("commit 748d150"), which can rerun it."""
    changed = ", ".join(f"{name} {was} ({now})"  # today's as a record holds it: lists, not tuples
                        for name, was, now in _differences(recorded, json.loads(json.dumps(today)), unset))
    if changed:
        shown = f" ({made_by[:60]})" if made_by and made_by.isprintable() else ""
        raise ConfigError(f"its run trained with {changed if len(changed) <= 300 else changed[:297] + '...'}, which "
                          f"no option sets: a rerun here would train otherwise; rerun it with the code that made "
                          f"it{shown}")


def _differences(recorded: dict, today: dict, unset: bool, prefix: str = ""):
    """(name, recorded value's repr, what it is today) of each setting of ``today`` the record gives otherwise;
    those of a group (classify's ``meta_neighborhoods``) one by one, as group.name, and a group's settings that
    today lacks (a later version's, or an edit) too: the rerun would train without them."""
    for name, value in today.items():
        if name not in recorded:
            if unset:
                yield prefix + name, "unset", f"now {value!r}"
        elif isinstance(value, dict) and isinstance(recorded[name], dict):
            yield from _differences(recorded[name], value, unset, f"{prefix}{name}.")
            yield from ((f"{prefix}{name}.{extra[:40]}", repr(recorded[name][extra])[:80], "no such setting now")
                        for extra in sorted(set(recorded[name]) - set(value)))
        elif recorded[name] != value:
            yield prefix + name, repr(recorded[name])[:80], f"now {value!r}"


def _recorded_defaults(config: dict, record: dict) -> dict:
    """The settings the recorded run's estimator took by default (``config["estimator"]``, all of them), as the
    options that carry them, so that a rerun trains as it did after a default changed; a setting no option carries
    that today's default changes is refused (a record of an earlier version reran silently with today's: 0.32 ->
    0.55 on yacht). Records from before the full settings were kept give nothing here."""
    estimator = config.get("estimator")
    if estimator is None:
        return {}
    if not isinstance(estimator, dict):
        raise ConfigError(f"its estimator settings should be a JSON object, got {type(estimator).__name__}")
    param = record.get("param") if isinstance(record.get("param"), str) else None  # else refused as an option
    skip = {param, "vanilla_fallback" if "param" in record else None,  # an ablation's own
            "hidden_layer_sizes" if config.get("search") is True else None}
    today = {name: value for name, value in asdict(ESTIMATOR).items() if name not in {*ESTIMATOR_OPTIONS, *skip}}
    made = config.get("provenance") if isinstance(config.get("provenance"), dict) else {}
    commit = f"commit {made['git_commit'][:40]}" if isinstance(made.get("git_commit"), str) else None
    same_fixed_settings(estimator, today, commit, unset=True)
    return {name: estimator[name] for name in ESTIMATOR_OPTIONS if name in estimator and name not in skip}
