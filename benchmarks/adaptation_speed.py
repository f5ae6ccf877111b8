"""How fast is one meta-training step? Vanilla vs the generic vmap oracle vs a Python loop vs the fast path.

Configuration (issue 2): MLP head 90-128-128-1, batch B = 256, S = 512 keys, one inner step, all
layers adapted, second-order meta-gradients. Every variant is a full forward + backward of the
meta-loss, timed in this process. The loop runs on a subset of the batch and is scaled to B.

    python benchmarks/adaptation_speed.py [--json PATH] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json

import torch

from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from timing import timed  # benchmarks/timing.py: scripts run from this folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the timings here")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--keys", type=int, default=512)
    parser.add_argument("--loop-subset", type=int, default=16, help="examples the Python loop runs (scaled to the batch)")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(90, (128, 128), 1), dictionary_size=args.keys, adapt="all").to(device)
    x = torch.randn(args.batch, 90, device=device)
    y = torch.randn(args.batch, 1, device=device)

    def step(implementation, rows=slice(None)):
        def run():
            model.zero_grad(set_to_none=True)
            if implementation == "vanilla":
                prediction = model.head(x[rows])
            else:
                model.adaptation.implementation = implementation
                prediction = model(x[rows])
            model.loss(prediction, y[rows]).backward()
        return run

    subset = min(args.loop_subset, args.batch)
    def alone(run, repeats):  # each variant on its own, with as many repeats as its run time allows
        return timed({"step": run}, repeats, 1, device)["step"]

    ms = {
        "vanilla_ms": alone(step("vanilla"), 50),
        "fast_ms": alone(step("fast"), 20),
        "generic_ms": alone(step("generic"), 3),
        "loop_ms": alone(step("loop", slice(0, subset)), 2) * args.batch / subset,
    }
    print(f"one meta-training step, MLP 90-128-128-1, B={args.batch}, S={args.keys}, 1 inner step, "
          f"all layers, second order, {device.type} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{'variant':<28}{'ms':>12}{'vs fast':>12}{'vs vanilla':>12}")
    names = {"vanilla_ms": "vanilla (no neighbours)", "fast_ms": "fast path",
             "generic_ms": "generic (torch.func vmap)", "loop_ms": f"python loop (x{args.batch // subset} scaled)"}
    for key, name in names.items():
        print(f"{name:<28}{ms[key]:>12.2f}{ms[key] / ms['fast_ms']:>11.1f}x{ms[key] / ms['vanilla_ms']:>11.1f}x")
    print(f"targets: generic / fast >= 100x (got {ms['generic_ms'] / ms['fast_ms']:.0f}x), "
          f"fast / vanilla <= 8x (got {ms['fast_ms'] / ms['vanilla_ms']:.1f}x)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({k: round(v, 3) for k, v in ms.items()}, handle, indent=2)


if __name__ == "__main__":
    main()
