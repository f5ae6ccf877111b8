"""Top-k attention where each row takes its own step (several inner steps, or a diagonal step size): the dense
path against the gathered one, and which of them ``MetaNeighborhoods.runs_dense`` chooses.

With one step shared by the batch a key costs a row a Gram product and a mix, and the dense path pays up to
``model.DENSE_BELOW`` keys per k. A row that takes its own step carries every key it attends to through each adapted
tensor, so on the dense path it multiplies all S keys by the adapted weights. For each setting (MLP
``--features``-128-128-1, ``--keys`` keys, top-``--top-k``, no slot dropout) one training step (forward and backward)
and one evaluation of ``--batch`` rows, on each path forced (DENSE_BELOW raised or set to 0); interleaved, medians.

    python benchmarks/own_step_paths.py [--keys 1024] [--top-k 32] [--batch 128] [--repeats 3] [--threads 1]
        [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse

import torch

from meta_neighborhoods import MetaNeighborhoods
from meta_neighborhoods import model as model_module
from meta_neighborhoods.heads import MLPHead
from record import measure  # benchmarks/: scripts run from this folder
from timing import timed

SETTINGS = {"1 step, all layers": {}, "2 steps, all layers": {"inner_steps": 2},
            "diagonal, all layers": {"step_size": "diagonal"}, "2 steps, last layer": {"inner_steps": 2, "adapt": "last"},
            "diagonal, last layer": {"step_size": "diagonal", "adapt": "last"}}
FORCED = {"dense": 10**9, "gathered": 0}  # DENSE_BELOW that forces each path


def on_path(path: str, call):
    """``call`` run with the path forced."""
    def run():
        saved, model_module.DENSE_BELOW = model_module.DENSE_BELOW, FORCED[path]
        try:
            return call()
        finally:
            model_module.DENSE_BELOW = saved
    return run


def steps(model: MetaNeighborhoods, x: torch.Tensor, y: torch.Tensor) -> dict:
    """A training step and an evaluation on each path, by name."""
    def train():
        model.train()
        model.zero_grad()
        model.loss(model(x), y).backward()

    def evaluate():
        model.eval()
        with torch.no_grad():
            return model(x)

    return {f"{kind} {path}": on_path(path, call) for kind, call in (("train", train), ("eval", evaluate))
            for path in FORCED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=90)
    parser.add_argument("--keys", type=int, default=1024)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    measure(parser, lambda args: {**vars(args), "rows": _report(args)})


def _report(args) -> list[dict]:
    """Time each setting's paths, taking turns, and print them; a row of figures per setting."""
    x, y = torch.randn(args.batch, args.features), torch.randn(args.batch, 1)
    print(f"MLP {args.features}-128-128-1, S = {args.keys}, top-{args.top_k}, B = {args.batch}, {args.threads} "
          f"thread(s); interleaved, median of {args.repeats}; ms")
    print(f"{'setting':<22} {'chosen':>8} {'train dense':>12} {'gathered':>9} {'eval dense':>11} {'gathered':>9}")
    rows = []
    for name, setting in SETTINGS.items():
        torch.manual_seed(0)
        model = MetaNeighborhoods(MLPHead(args.features, (128, 128)), dictionary_size=args.keys, top_k=args.top_k,
                                  slot_dropout=0.0, **{"adapt": "all", **setting})
        ms = timed(steps(model, x, y), args.repeats, 1, torch.device("cpu"))
        chosen = "dense" if model.runs_dense(args.keys, args.top_k) else "gathered"
        rows.append({"setting": name, "chosen": chosen, **{key: round(value, 2) for key, value in ms.items()}})
        print(f"{name:<22} {chosen:>8} {ms['train dense']:>12.1f} {ms['train gathered']:>9.1f} "
              f"{ms['eval dense']:>11.1f} {ms['eval gathered']:>9.1f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
