"""What one training step of the defaults costs, and how much of it choosing the keys alone takes.

The estimators' defaults (top-128 attention with slot dropout 0.5, the last layer adapted, cosine similarity for
these 90 features) on rows of ``fit_scale.py``'s synthetic 90-feature table, batch 128, the dictionary started at
training rows as ``fit`` starts it. Timed in this process, interleaved (one call of each per round), medians:

* vanilla: a whole training step of the same MLP without neighbours, as ``fit`` takes it (forward, backward,
  gradient clipping, fused AdamW over the model's parameter groups, the moving average's update);
* choose: only the exact choice of each row's keys among S (``Attention.choose``: the B x S similarities and
  the top-k of the nearest candidates), no gradient, nothing else. Any exact top-k attention does this work
  every step, so ``choose / vanilla`` bounds MN's cost per epoch from below, whatever the inner loop costs (0 for
  S <= k: every key is attended, nothing is chosen);
* keys alone: only the head's work on the keys the batch attends to (the dense path, S <= 32 k, runs all S):
  their forward, the inner loss's gradient at the last layer's output and the backward of both to the network and the
  keys (``adaptation_speed.keys_alone``), nothing of the batch. Every exact implementation does this too, so
  ``keys alone / vanilla`` is a second floor;
* MN: a whole training step of the defaults, the same way.

    python benchmarks/step_parts.py [--sizes 512 4096 16384] [--repeats 20] [--threads 2] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import functools

import torch

from adaptation_speed import attended_keys, chosen_keys, keys_alone  # benchmarks/: scripts run from this folder
from fit_scale import table
from meta_neighborhoods import MetaNeighborhoodsRegressor
from meta_neighborhoods.callbacks import WeightAverage
from meta_neighborhoods.estimator_settings import network_description
from meta_neighborhoods.factories import build_network
from meta_neighborhoods.training import OptimizerSpec, optimizer_step
from record import measure  # benchmarks/: scripts run from this folder
from timing import timed

BATCH = 128  # the estimators' batch size


def build(dictionary_size: int, rows: torch.Tensor, targets: torch.Tensor):
    """The defaults' network for 90 features, as ``fit`` builds and starts it, and its training step."""
    estimator = MetaNeighborhoodsRegressor(dictionary_size=dictionary_size)
    network = network_description(estimator, rows.shape[1], 1, len(rows), rows.shape[1], dictionary_size)
    model = build_network(estimator, **network).train()
    if not model.vanilla:
        model.dictionary.init_from_samples(rows, targets, generator=torch.Generator().manual_seed(0))
    return model, training_step(model, estimator)


def training_step(model, estimator: MetaNeighborhoodsRegressor):
    """One step of ``fit``'s loop (``training._train_epoch``) with the estimator's optimiser, clipping and average."""
    spec = OptimizerSpec(estimator.learning_rate, estimator.weight_decay, grad_clip=estimator.gradient_clip)
    optimiser, average = spec.build(model)[0], WeightAverage(model, estimator.ema_decay)

    def run(x, y):
        optimizer_step(model, optimiser, spec.grad_clip, model.loss(model(x), y))
        average.on_step(0)
    return run


def choosing(model, x):
    """The exact choice of each row's keys at training time, as the defaults make it."""
    def run():
        chosen_keys(model, x)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 16384], help="dictionary sizes S")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    measure(parser, _report)


def _report(args) -> dict:
    """Time the parts, taking turns, and print them; the figures (``--json``)."""
    torch.manual_seed(0)
    X, y = table(max(args.sizes) + BATCH)
    rows, targets = torch.from_numpy(X).float(), torch.from_numpy(y).float()[:, None]
    rows = (rows - rows.mean(0)) / rows.std(0)
    x, y_batch = rows[-BATCH:], targets[-BATCH:]  # a batch of rows outside the dictionary's start

    steps = {"vanilla": functools.partial(build(0, rows, targets)[1], x, y_batch)}
    for size in args.sizes:
        model, step = build(size, rows[:size], targets[:size])
        if model.config.neighbourhood_size(training=True) is not None:  # else every key is attended: no choice
            steps[f"choose S={size}"] = choosing(model, x)
        steps[f"keys S={size}"] = keys_alone(model, attended_keys(model, x))
        steps[f"MN S={size}"] = functools.partial(step, x, y_batch)
    ms = timed(steps, args.repeats, 2, torch.device("cpu"))

    print(f"one training step of the defaults, B={BATCH}, 90 features, MLP 128-128, {args.threads} threads, "
          f"torch {torch.__version__}; interleaved, median of {args.repeats} rounds")
    print(f"{'S':>7}{'vanilla ms':>12}{'choose ms':>11}{'choose / vanilla':>18}{'keys alone ms':>15}"
          f"{'keys alone / vanilla':>22}{'MN ms':>9}{'MN / vanilla':>14}{'choose / MN':>13}")
    vanilla = ms["vanilla"]
    for size in args.sizes:
        choose, keys, step = ms.get(f"choose S={size}", 0.0), ms[f"keys S={size}"], ms[f"MN S={size}"]
        print(f"{size:>7}{vanilla:>12.2f}{choose:>11.2f}{choose / vanilla:>17.1f}x{keys:>15.2f}{keys / vanilla:>21.1f}x"
              f"{step:>9.2f}{step / vanilla:>13.1f}x{choose / step:>13.0%}")
    return {"batch": BATCH, "threads": args.threads, "ms": {k: round(v, 3) for k, v in ms.items()}}


if __name__ == "__main__":
    main()
