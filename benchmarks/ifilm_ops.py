"""iFiLM's dispatch cost: aten operators and time of one ResNet-29 training step, against vanilla, on the CPU.

A GPU step of a small batch is launch-bound: its time follows the operators it dispatches more than its FLOPs.
For each method this script

* counts the ``aten::`` events of one training step (forward, meta-loss, backward, gradient clipping, AdamW)
  under ``torch.profiler``: ``all`` counts nested events too (``aten::linear`` and the ``aten::addmm`` it
  calls are two), ``fwd+bwd`` those of the forward and backward passes alone, ``leaf`` only those that call
  no other aten operator (about the kernels a GPU would launch, views included). AdamW is the fused kernel
  (``OptimizerSpec``), a few events per step on the CPU as on CUDA; the value clipping still takes one
  ``clamp_`` per parameter on the CPU (on CUDA a grouped ``foreach`` operator);
* times the step as ``train_throughput.py`` does (its ``training_step``; the methods take turns step by
  step, median over ``--steps``, one thread) at the backbone's image size (32x32) and at 4x4, where the
  arithmetic is negligible and the time is dispatch overhead (a CPU stand-in for the launch-bound GPU step).

    python benchmarks/ifilm_ops.py [--batch 32] [--steps 11] [--backbone resnet29] [--before FILE] [--json PATH]
        [--out PATH]

``--before FILE`` also measures vanilla+iFiLM and MN+iFiLM built with the ``film_norm_layer`` of FILE, an
earlier film.py (``git show REV:src/meta_neighborhoods/film.py > FILE``), in the same process and taking
turns with the others, so that before and after share the machine's load. ``--out PATH`` writes the printed
table under a header of what produced it (``record.py``: commit, command, versions, threads); ``--json PATH`` the
counts and times with the same record.

Goal (issue 13): MN+iFiLM keeps at least 0.8x of vanilla's images/s on the CPU at batch 32, 32x32.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
from types import ModuleType
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile

from meta_neighborhoods import image_methods
from record import Record, add_options  # benchmarks/: scripts run from this folder
from timing import timed
from train_throughput import BACKBONES, training_step

METHODS = ("vanilla", "vanilla_ifilm", "mn", "mn_ifilm")
GOAL, TINY_SIDE = 0.8, 4
CPU = torch.device("cpu")


def load_film(path: str) -> ModuleType:
    """The film.py at ``path`` as a module of the package, so that its relative imports resolve."""
    spec = importlib.util.spec_from_file_location("meta_neighborhoods._film_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_for(method: str, film: ModuleType | None, backbone: str, batch: int, side: int | None = None):
    """``training_step`` of ``method``, its iFiLM layers from ``film`` (None: the installed film.py)."""
    patch = (mock.patch.object(image_methods, "film_norm_layer", film.film_norm_layer) if film
             else contextlib.nullcontext())
    with patch:
        return training_step(method, backbone, batch, CPU, side)


def _in_optimiser(event) -> bool:
    """Whether an event belongs to AdamW's step (or zero_grad) or to the clipping's foreach operators."""
    while event.cpu_parent is not None:
        event = event.cpu_parent
    return event.name.startswith(("Optimizer.", "aten::_foreach_"))


def count_ops(step) -> tuple[int, int, int]:
    """(all, forward and backward, leaf) aten events of one training step, after a warm-up step (AdamW's
    state exists)."""
    step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step()
    aten = [e for e in profiler.events() if e.name.startswith("aten::")]
    leaves = [e for e in aten if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    return len(aten), sum(not _in_optimiser(e) for e in aten), len(leaves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="images per step")
    parser.add_argument("--steps", type=int, default=11, help="timed steps per method and image size")
    parser.add_argument("--backbone", choices=list(BACKBONES), default="resnet29")
    parser.add_argument("--before", metavar="FILE", help="an earlier film.py to measure beside the installed one")
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with Record(args.json, args.out) as record:
        record.figures = _report(args)


def _report(args) -> dict:
    """Count and time every method's step, taking turns, and print them; the figures (``--json``)."""
    rows = {m: (m, None) for m in METHODS}
    if args.before:
        before = load_film(args.before)
        rows |= {f"{m} (before)": (m, before) for m in ("vanilla_ifilm", "mn_ifilm")}
    ops = {name: count_ops(step_for(*spec, args.backbone, args.batch)) for name, spec in rows.items()}
    full, tiny = ({name: step_for(*spec, args.backbone, args.batch, side) for name, spec in rows.items()}
                  for side in (None, TINY_SIDE))
    full, tiny = timed(full, args.steps, 1, CPU), timed(tiny, args.steps, 1, CPU)

    side = BACKBONES[args.backbone][1]
    print(f"{args.backbone}, one training step (forward, meta-loss, backward, clip, AdamW), batch {args.batch}, "
          f"cpu (1 thread), torch {torch.__version__}; time: median of {args.steps} steps, methods taking turns")
    print(f"{'method':<24}{'aten ops':>9}{'fwd+bwd':>8}{'leaf ops':>9}{'vs vanilla':>11}{f'ms {side}x{side}':>11}"
          f"{'images/s':>10}{'vs vanilla':>11}{f'ms {TINY_SIDE}x{TINY_SIDE}':>9}{'vs vanilla':>11}")
    for name in rows:
        print(f"{name:<24}{ops[name][0]:>9}{ops[name][1]:>8}{ops[name][2]:>9}{ops[name][0] / ops['vanilla'][0]:>10.2f}x"
              f"{full[name]:>11.1f}{args.batch * 1e3 / full[name]:>10.1f}{full['vanilla'] / full[name]:>10.2f}x"
              f"{tiny[name]:>9.1f}{tiny['vanilla'] / tiny[name]:>10.2f}x")
    ratio = full["vanilla"] / full["mn_ifilm"]
    print(f"goal: MN+iFiLM >= {GOAL}x vanilla's images/s at {side}x{side}: {ratio:.2f}x "
          f"({'met' if ratio >= GOAL else 'missed'})")
    return {"backbone": args.backbone, "batch": args.batch, "steps": args.steps, "tiny_side": TINY_SIDE,
            "aten_ops": {name: dict(zip(("all", "fwd+bwd", "leaf"), counts)) for name, counts in ops.items()},
            "ms": full, "ms_tiny": tiny, "goal_ratio": GOAL, "vs_vanilla": ratio}


if __name__ == "__main__":
    main()
