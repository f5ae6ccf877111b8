"""``meta-neighborhoods analyze``: figures 4-5 and Appendix A.8 of a Meta-Neighborhoods classify run."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import KEYS_PER_CLASS, MAX_KEYS, RETRIEVED, TSNE_SAMPLES
from ..run_files import ANALYSES
from .common import UsageError, data_folders, device, output, parent, path, seed, verbosity

LOGGER = logging.getLogger(__name__)

SUMMARIES = {
    "tsne": lambda r: (f"tsne: {r['train_images']} training features and {r['dictionary_size']} keys; keys whose "
                       f"nearest training feature shares their class: {r['key_nearest_same_class_share']:.3f} "
                       f"(feature space {r['key_nearest_same_class_share_feature_space']:.3f})"),
    "cosine": lambda r: (f"cosine: {r['test_images']} test images, {r['share_above_diagonal']:.3f} above, "
                         f"{r['share_below_diagonal']:.3f} below and {r['share_on_diagonal']:.3f} on the "
                         f"diagonal, mean cosine {r['mean_before']:.3f} -> {r['mean_after']:.3f}, accuracy "
                         f"{r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f}"),
    "retrieval": lambda r: (f"retrieval: {len(r['keys'])} keys x {r['config']['k']} nearest of "
                            f"{r['test_images']} test images, same class as the key: {r['same_class_share']:.3f}"),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="figures 4-5 and App. A.8 of a classify run: t-SNE of keys, cosine before/after finetuning, retrieval",
        parents=[_run(), output(required=False, metavar="DIR",
                                help="where to write PNG and JSON files (default: the run folder)"),
                 data_folders(),
                 _samples(), seed(help="seed of the samples and of t-SNE (default %(default)s)"),
                 device(task="compute features"), _overwrite(), verbosity("warnings and errors only")],
        description="Reload a Meta-Neighborhoods classify run (its best checkpoint and data set; vanilla runs have no "
                    "dictionary and are refused) and write, next to each PNG, a JSON file with its numbers: "
                    "tsne (Fig. 5: keys among training features, t-SNE, keys coloured by their value's class), "
                    "cosine (Fig. 4: cosine of each test feature to its true class prototype before vs after the "
                    "per-input finetuning, share above the diagonal, accuracy before vs after), retrieval "
                    f"(Appendix A.8: the {RETRIEVED} nearest test images of learned neighbours, {KEYS_PER_CLASS} "
                    f"per value class, at most {MAX_KEYS}).",
    )
    parser.set_defaults(run=run)


def _run():
    """--run and --what, the first options in --help."""
    parser = parent()
    parser.add_argument("--run", dest="run_dir", type=path, required=True, metavar="DIR",  # args.run is the handler
                        help="folder of one classify run (with --method all: OUT/mn or OUT/mn_ifilm)")
    parser.add_argument("--what", required=True, choices=[*ANALYSES, "all"],
                        help="which analysis to run (all = the three)")
    return parser


def _samples():
    """How many images and keys the analyses take, between the data folders and --seed in --help."""
    parser = parent()
    parser.add_argument("--samples", type=int, metavar="N",
                        help=f"training images for tsne (default {TSNE_SAMPLES}), test images for cosine and retrieval "
                             "(default all); a seeded sample")
    parser.add_argument("--keys-per-class", type=int, metavar="K",
                        help=f"retrieval: most confident keys per value class (default {KEYS_PER_CLASS}; at most "
                             f"{MAX_KEYS} rows)")
    parser.add_argument("--all-keys", action="store_true", help="retrieval: one row for every key instead")
    return parser


def _overwrite():
    """--overwrite: replace earlier analyses in an --out other than the run."""
    parser = parent()
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the analyses in an --out other than the run, all of them, whatever --what, so "
                             "that the folder never holds two runs' analyses (the run's own are always replaced); an "
                             "--out that holds another run is refused")
    return parser


def run(args) -> int:
    from ..experiments.analysis import run_analysis

    if args.all_keys and args.keys_per_class is not None:
        raise UsageError("--all-keys shows every key, --keys-per-class the most confident of each class: give one")
    given = [option for option, value in (("--all-keys", args.all_keys), ("--keys-per-class", args.keys_per_class))
             if value not in (False, None)]
    if given and args.what not in ("retrieval", "all"):
        raise UsageError(f"{given[0]} chooses the keys of the retrieval figure, which --what {args.what} does not draw")
    per_class = None if args.all_keys else KEYS_PER_CLASS if args.keys_per_class is None else args.keys_per_class
    results = run_analysis(
        args.run_dir, args.what, out=args.out, data_dir=args.data_dir, cache_dir=args.cache_dir, samples=args.samples,
        seed=args.seed, device=args.device, keys_per_class=per_class,
        max_keys=None if args.all_keys else MAX_KEYS, overwrite=args.overwrite,
    )
    out = Path(args.out if args.out is not None else args.run_dir)
    for name, result in results.items():
        print(SUMMARIES[name](result))
        LOGGER.info("wrote %s, %s.json", out / (name + ".png"), name)
    return 0
