"""The command line: ``meta-neighborhoods <experiment> ...`` (also ``python -m meta_neighborhoods``)."""

from __future__ import annotations

import argparse
import json
import sys

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meta-neighborhoods",
        description="Meta-Neighborhoods (Shan, Li, Oliva, NeurIPS 2020): experiments from the paper.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub):
        sub.add_argument("--out", required=True, help="folder for metrics, configuration and figures (created if needed)")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, PermissionError, RuntimeError, FloatingPointError) as error:
        print(f"meta-neighborhoods {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
