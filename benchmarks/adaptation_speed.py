"""How fast is one meta-training step? Vanilla vs the generic vmap oracle vs a Python loop vs the fast path,
and the fast path against vanilla for dictionary sizes S and top-k attention K.

Configuration (issues 2 and 10): MLP head 90-128-128-1, batch B = 256, one inner step, all layers adapted (or
with ``--adapt last`` the last, as the estimators' defaults; ``--head periodic``: the same MLP on periodic
embeddings of the 90 features, ``PeriodicMLPHead``, whose last layer alone adapts, on the path of a declared last
layer),
second-order meta-gradients, Euclidean attention at temperature 90 (the inputs' width); keys and inputs N(0, 1),
so that the inputs of a batch share few neighbours (the worst case for top-k: up to B K distinct keys per step).
Every variant is a full forward + backward of the meta-loss, timed in this process; the variants compared take
turns (one call each per round: vanilla, fast path, oracle and loop at S = ``--keys``, full attention; then
vanilla and the fast path for each S x K) and the medians are reported, since these machines vary 2-4x from run
to run. The loop runs on a subset of the batch and is scaled to B. ``--threads`` sets torch's CPU threads.

"keys" is how many keys the inner loop runs the head on (forward, backward and, second order, the backward of
that): all S on the dense path, else the distinct keys the batch attends to. "keys alone" times the least of that
work (``keys_alone``): the keys the batch attends to through the head, the inner loss's gradient at each adapted
layer's output, and the backward of a scalar of the layers' inputs and those gradients (the second order), with
nothing of the batch: no choice of keys, no attention, no adapted prediction, no weight gradient of the inner
loss. Every exact implementation of the step does at least this, so ``keys alone / vanilla`` bounds the step's
ratio from below.

``--out PATH`` writes the printed tables under a header of what produced them (``record.py``: commit, command,
versions, threads). ``--json PATH`` writes that record ("provenance"), the four variants' medians (``vanilla_ms``,
``fast_ms``, ``generic_ms``, ``loop_ms``: S = ``--keys``, full attention), the settings (batch, S, adapt, device)
and ``configs``, one entry per S x K: ``dictionary_size``, ``top_k`` (null for full attention), ``vanilla_ms``,
``fast_ms``, ``keys_ms`` (keys alone) and ``distinct_keys`` (the "keys" column). The goals printed last are issue
10's (K = 32: at most 4x vanilla at S = 512, 10x at S = 16,384), for the settings run.

    python benchmarks/adaptation_speed.py [--json PATH] [--out PATH] [--device cpu|cuda] [--threads N]
        [--sizes 512 4096 16384] [--ks 0 64 32] [--repeats 30] [--oracle-repeats 5] [--adapt all|last]
        [--head mlp|periodic]
"""

from __future__ import annotations

import argparse

import torch

from meta_neighborhoods.heads import MLPHead, PeriodicMLPHead, last_layer_names
from meta_neighborhoods.model import MetaNeighborhoods
from record import Record, add_options  # benchmarks/: scripts run from this folder
from timing import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--keys", type=int, default=512, help="S of the four-variant comparison (full attention)")
    parser.add_argument("--loop-subset", type=int, default=16,
                        help="examples the Python loop runs (scaled to the batch)")
    parser.add_argument("--oracle-repeats", type=int, default=5,
                        help="rounds of the four-variant comparison (the oracle and the loop take ~1 s a call)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 16384], help="dictionary sizes S")
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 64, 32], help="top-k K (0 = full attention)")
    parser.add_argument("--repeats", type=int, default=30, help="rounds of the interleaved S x K timings")
    parser.add_argument("--adapt", default="all", choices=["all", "last"], help="layers the inner loop finetunes")
    parser.add_argument("--head", default="mlp", choices=list(HEADS),
                        help="the MLP, or the MLP on periodic embeddings (its last layer alone adapts: --adapt last)")
    args = parser.parse_args()
    if args.head == "periodic" and args.adapt != "last":
        parser.error("--head periodic adapts its last layer alone: give --adapt last")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    with Record(args.json, args.out) as record:
        record.figures = _report(args, device)


def _report(args, device: torch.device) -> dict:
    """Time the variants, print the tables and the goals; the figures (``--json``)."""
    torch.manual_seed(0)
    x = torch.randn(args.batch, 90, device=device)
    y = torch.randn(args.batch, 1, device=device)
    ms = _implementations(_model(args.keys, None, args, device), x, y, args.loop_subset, args.oracle_repeats, device)
    print(f"one meta-training step, {HEADS[args.head][0]}, B={args.batch}, S={args.keys}, 1 inner step, "
          f"adapt={args.adapt}, second order, {device.type} ({torch.get_num_threads()} threads), "
          f"torch {torch.__version__}; interleaved, median of {args.oracle_repeats} rounds")
    print(f"{'variant':<28}{'ms':>12}{'vs fast':>12}{'vs vanilla':>12}")
    subset = min(args.loop_subset, args.batch)
    names = {"vanilla_ms": "vanilla (no neighbours)", "fast_ms": "fast path",
             "generic_ms": "generic (torch.func vmap)", "loop_ms": f"python loop (x{args.batch / subset:.3g} scaled)"}
    for key, name in names.items():
        print(f"{name:<28}{ms[key]:>12.2f}{ms[key] / ms['fast_ms']:>11.1f}x{ms[key] / ms['vanilla_ms']:>11.1f}x")
    print(f"issue 2's targets: generic / fast >= 100x (got {ms['generic_ms'] / ms['fast_ms']:.0f}x), "
          f"fast / vanilla <= 8x (got {ms['fast_ms'] / ms['vanilla_ms']:.1f}x)")
    configs = [_sizes_and_top_k(S, K or None, x, y, args.repeats, device, args) for S in args.sizes for K in args.ks]
    print(f"\nS x top-k: fast path vs vanilla, interleaved, median of {args.repeats} rounds")
    print(f"{'S':>7}{'top-k':>7}{'vanilla ms':>12}{'fast ms':>10}{'ratio':>8}{'keys':>8}{'keys / B':>10}"
          f"{'keys alone ms':>15}{'keys alone / vanilla':>22}")
    for c in configs:
        print(f"{c['dictionary_size']:>7}{c['top_k'] or 'full':>7}{c['vanilla_ms']:>12.2f}{c['fast_ms']:>10.2f}"
              f"{c['fast_ms'] / c['vanilla_ms']:>7.1f}x{c['distinct_keys']:>8}{c['distinct_keys'] / len(x):>9.1f}x"
              f"{c['keys_ms']:>15.2f}{c['keys_ms'] / c['vanilla_ms']:>21.1f}x")
    _goals(configs)
    settings = {"batch": args.batch, "keys": args.keys, "adapt": args.adapt, "head": args.head, "device": device.type,
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    return {**ms, **settings, "configs": configs}


GOALS = {(512, 32): 4.0, (16384, 32): 10.0}  # issue 10: (S, K) -> the most the fast step may cost, x vanilla


def _goals(configs: list[dict]) -> None:
    """Issue 10's speed goals, for the S x K settings that ran."""
    for c in configs:
        goal = GOALS.get((c["dictionary_size"], c["top_k"]))
        if goal is not None:
            ratio = c["fast_ms"] / c["vanilla_ms"]
            print(f"goal S={c['dictionary_size']} K={c['top_k']}: fast / vanilla <= {goal:g}x, got {ratio:.1f}x "
                  f"({'met' if ratio <= goal else 'missed'})")


HEADS = {"mlp": ("MLP 90-128-128-1", lambda: MLPHead(90, (128, 128), 1)),
         "periodic": ("periodic embeddings + MLP 810-128-128-1", lambda: PeriodicMLPHead(90, 1, hidden=(128, 128)))}


def _model(size: int, top_k: int | None, args, device) -> MetaNeighborhoods:
    """The benchmark's network: ``--head`` on 90 features, Euclidean attention at a temperature of their number."""
    torch.manual_seed(0)
    return MetaNeighborhoods(HEADS[args.head][1](), dictionary_size=size, top_k=top_k, adapt=args.adapt,
                             similarity="euclidean", temperature=90.0).to(device)


def _step(model: MetaNeighborhoods, x, y, implementation: str, rows=slice(None)):
    """One meta-training step's forward and backward (no optimiser: it is the same for every variant)."""
    def run():
        model.zero_grad(set_to_none=True)
        if implementation == "vanilla":
            prediction = model.head(x[rows])
        else:
            model.adaptation.implementation = implementation
            prediction = model(x[rows])
        model.loss(prediction, y[rows]).backward()
    return run


def _implementations(model: MetaNeighborhoods, x, y, loop_subset: int, repeats: int, device) -> dict:
    """Vanilla, the fast path, the vmap oracle and the Python loop (on ``loop_subset`` rows, scaled to the batch),
    taking turns; medians in milliseconds."""
    subset = min(loop_subset, len(x))
    ms = timed({"vanilla_ms": _step(model, x, y, "vanilla"), "fast_ms": _step(model, x, y, "fast"),
                "generic_ms": _step(model, x, y, "generic"), "loop_ms": _step(model, x, y, "loop", slice(0, subset))},
               repeats, 1, device)
    model.adaptation.implementation = "auto"
    return {**{k: round(v, 3) for k, v in ms.items()}, "loop_ms": round(ms["loop_ms"] * len(x) / subset, 3)}


def _sizes_and_top_k(size: int, top_k: int | None, x, y, repeats: int, device, args) -> dict:
    """Vanilla and the fast path of one S x K setting, taking turns; medians in milliseconds."""
    model = _model(size, top_k, args, device)
    attended = attended_keys(model, x)
    ms = timed({"vanilla_ms": _step(model, x, y, "vanilla"), "fast_ms": _step(model, x, y, "auto"),
                "keys_ms": keys_alone(model, attended)}, repeats, 2, device)
    k = model.config.neighbourhood_size(training=True)
    dense = k is None or model.runs_dense(size, k)
    return {"dictionary_size": size, "top_k": top_k, **{name: round(v, 3) for name, v in ms.items()},
            "distinct_keys": size if dense else attended.numel()}  # the keys the fast path runs the head on


def chosen_keys(model: MetaNeighborhoods, x: torch.Tensor) -> torch.Tensor:
    """Each row's keys (B, k) as a training step chooses them (``Attention.choose``, with slot dropout's draw)."""
    attention, keys = model.attention, model.dictionary.keys.detach()
    k = model.config.neighbourhood_size(training=True)
    return attention.choose(attention.scaled(x), attention.scaled(keys), k, model.dictionary.hidden_share)[0]


def attended_keys(model: MetaNeighborhoods, x: torch.Tensor) -> torch.Tensor:
    """The slots some row of x attends to in training: the keys any exact step must run the head on."""
    if model.config.neighbourhood_size(training=True) is None:
        return torch.arange(model.dictionary.size, device=model.dictionary.keys.device)
    return chosen_keys(model, x).unique()


def keys_alone(model: MetaNeighborhoods, used: torch.Tensor):
    """The floor of a step: the head's forward on the ``used`` keys (``attended_keys``), the inner loss's
    backward to each adapted layer's output (what the step needs of the keys: each layer's input and output
    gradient, no weight gradient), and the backward of a scalar of those (the second order), which reaches the
    weights and the keys. A head that declares its last layer runs its body, then that layer."""
    head = model.head
    body, layers = (head.body, [head.last_layer]) if last_layer_names(head) else (None, list(head.layers))
    adapted = range(len(layers)) if model.config.adapt == "all" else [len(layers) - 1]

    def run():
        model.zero_grad(set_to_none=True)
        h, kept, outputs = model.dictionary.keys[used], [], []
        h = body(h) if body else h
        for i, layer in enumerate(layers):
            z = layer(h)
            if i in adapted:
                kept.append(h)
                outputs.append(z)
            h = torch.relu(z) if i < len(layers) - 1 else z
        inner = model.loss(h, model.dictionary.values()[used])
        gradients = torch.autograd.grad(inner, outputs, create_graph=True)
        sum(t.sum() for t in (*kept, *gradients)).backward()
    return run


if __name__ == "__main__":
    main()
