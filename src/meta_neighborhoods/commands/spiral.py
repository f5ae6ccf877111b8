"""``meta-neighborhoods spiral``: the two-spiral toy of Sec. 4.1 / Fig. 3."""

from __future__ import annotations

import logging
from dataclasses import asdict

from ..config import SPIRAL_METHOD, SpiralConfig
from ..run_files import METRICS
from ..validation import ConfigError, check_threads
from .common import add_threads, run_options, same_fixed_settings

LOGGER = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "spiral", help="two-spiral toy of Sec. 4.1 / Fig. 3", parents=run_options(),
        description=f"Train a vanilla linear classifier and Meta-Neighborhoods (same linear head, "
                    f"{SPIRAL_METHOD.dictionary_size} neighbours, negative squared Euclidean distance, T = "
                    f"{SPIRAL_METHOD.temperature:g}) on two spirals; writes metrics.json, run.json, spiral.png "
                    "and spiral.gif (test predictions, neighbours coloured by value, their trajectories).",
    )
    parser.add_argument("--epochs", type=int, default=SpiralConfig.epochs,
                        help=f"training epochs of {2 * SpiralConfig.n_per_class} points (default %(default)s)")
    parser.add_argument("--no-animation", action="store_true", help="skip the GIF")
    add_threads(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..experiments.spiral import run_spiral

    check_threads("--threads", args.threads)  # named as given, as regress names it (SpiralConfig says 'threads')
    config = SpiralConfig(seed=args.seed, epochs=args.epochs, animation=not args.no_animation, threads=args.threads)
    metrics = run_spiral(args.out, config, device=args.device, progress=not args.quiet,
                         overwrite=bool(args.overwrite))
    accuracy = metrics["test_accuracy"]
    print(f"spiral test accuracy: vanilla {accuracy['vanilla']:.4f}, "
          f"meta-neighborhoods {accuracy['meta_neighborhoods']:.4f} ({metrics['seconds']:.1f} s)")
    LOGGER.info("wrote %s/%s, %s", args.out, METRICS, ", ".join(metrics["files"]))
    return 0


RECORDS = (METRICS,)  # what options_from_record reads
OPTIONS = ("seed", "epochs", "device", "threads", "animation")  # the settings of its config an option sets


def options_from_record(record: dict) -> dict:
    """The options of the spiral run whose metrics.json ``record`` is, for --config: every one it records (a run of
    an earlier version recorded neither its device nor its threads). Its other settings are fixed: a record of
    other values is refused, as a rerun would train otherwise."""
    config = record.get("config")
    if not (isinstance(config, dict) and "n_per_class" in config):
        raise ConfigError("not the metrics.json of a spiral run")
    options = {name: config[name] for name in OPTIONS if name in config and name != "animation"}  # see below
    same_fixed_settings(config, {**{name: value for name, value in asdict(SpiralConfig()).items()
                                    if name not in {*OPTIONS, "method"}}, **SPIRAL_METHOD.to_dict()})
    if "animation" in config:
        if not isinstance(config["animation"], bool):
            raise ConfigError(f"animation must be true or false, got {config['animation']!r}")
        options["no_animation"] = not config["animation"]
    return options
