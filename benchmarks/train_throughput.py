"""Training throughput: images/s of one training step for the four Table 1 methods on two backbones.

One step is what ``training.fit`` does per batch: forward, the (meta-)loss, backward, gradients clipped by
value, AdamW step (weight decay as ``MetaNeighborhoods.parameter_groups``). The models are ``image_methods.build_model``
(dictionary of 100 slots, 10 classes), fed random inputs and labels in training
mode: ConvNet4 on 1x28x28, ResNet-29 on 3x32x32. Each time is the median over ``--steps`` timed steps after
warm-up (one step on the CPU, three on CUDA), all in this process (synchronised on CUDA); the four methods of a
backbone take turns step by step. Goal: MN+iFiLM keeps at least 0.6x of vanilla's throughput. ``--out PATH``
writes the printed table under a header of what produced it (``record.py``: commit, command, versions, threads);
``--json`` carries the same record under "provenance".

    python benchmarks/train_throughput.py [--json PATH] [--out PATH] [--device cpu|cuda] [--batch 128] [--steps N]
        [--threads N]
    python benchmarks/train_throughput.py --profile vanilla_ifilm --backbone resnet29 --device cuda

``--profile METHOD`` times nothing: it runs a few steps of one model under ``torch.profiler`` and prints the
operators that take the most (device) time, to find where a method's extra time goes.

``--cuda-graph`` (CUDA only) also times each method's step captured whole in a CUDA graph and replayed ("+graph"
rows): one launch instead of the thousands of kernel launches a small batch's step is bound by, which iFiLM
multiplies (see benchmarks/ifilm_ops.py). A method whose capture fails is reported with the error, not timed.

Timed steps: 5 on the CPU (under a minute on two cores), 20 on CUDA. On the CPU torch runs one thread unless
``--threads`` says otherwise: on two cores shared with other jobs, two threads made steps up to ten times
slower and the ratios meaningless (one thread waits for the other at every barrier).
"""

from __future__ import annotations

import argparse

import torch

from meta_neighborhoods.config import GRAD_CLIP
from meta_neighborhoods.image_methods import METHODS, build_model
from meta_neighborhoods.training import OptimizerSpec, optimizer_step
from record import Record, add_options  # benchmarks/: scripts run from this folder
from timing import timed

BACKBONES = {"convnet4": (1, 28), "resnet29": (3, 32)}  # name: (channels, side)
CLASSES, DICTIONARY_SIZE = 10, 100
GOAL = 0.6


def training_step(method: str, backbone: str, batch: int, device: torch.device, side: int | None = None,
                  capturable: bool = False):
    """A closure running one training step of a fresh model on one fixed random batch (images of the
    backbone's side unless ``side`` says otherwise); ``capturable``: an optimiser a CUDA graph can capture."""
    channels, default_side = BACKBONES[backbone]
    side = side or default_side
    torch.manual_seed(0)
    model = build_model(method, backbone, channels, CLASSES, DICTIONARY_SIZE).to(device).train()
    optimizer, _ = OptimizerSpec(1e-3, 7.5e-5, grad_clip=GRAD_CLIP).build(model)  # the training loop's
    for group in optimizer.param_groups:
        group["capturable"] = capturable  # keeps its step count on the device, so no host sync in the step
    x = torch.randn(batch, channels, side, side, device=device)
    y = torch.randint(CLASSES, (batch,), device=device)

    def step():
        optimizer_step(model, optimizer, GRAD_CLIP, model.loss(model(x), y))

    return step


def graphed_training_step(method: str, backbone: str, batch: int, device: torch.device):
    """``training_step`` captured in a CUDA graph (after three warm-up steps on a side stream, as capture
    requires); the closure replays it. Its batch stays fixed, as the eager step's does."""
    step = training_step(method, backbone, batch, device, capturable=True)
    side_stream = torch.cuda.Stream(device)
    side_stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side_stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side_stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def _steps(backbone: str, batch: int, device: torch.device, cuda_graph: bool) -> tuple[dict, dict]:
    """(name: step closure, name: why it could not be captured) for every method, and with ``cuda_graph`` every
    method captured too."""
    steps, failed = {m: training_step(m, backbone, batch, device) for m in METHODS}, {}
    for method in METHODS if cuda_graph else ():
        try:
            steps[f"{method}+graph"] = graphed_training_step(method, backbone, batch, device)
        except RuntimeError as error:  # reported, so that the other methods are still timed
            failed[f"{method}+graph"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return steps, failed


def profile(method: str, backbone: str, batch: int, device: torch.device, rows: int = 20) -> None:
    """Print the operators with the most self time over 5 steps (after 3 warm-up steps) of one model."""
    step = training_step(method, backbone, batch, device)
    for _ in range(3):
        step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(5):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"{method} on {backbone}, batch {batch}, 5 steps, {device}:")
    print(profiler.key_averages().table(sort_by=key, row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=128, help="images per step")
    parser.add_argument("--steps", type=int, help="timed steps per model (default: 5 on cpu, 20 on cuda)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on cpu, torch's own on cuda)")
    parser.add_argument("--profile", choices=list(METHODS), help="profile this method instead of timing all four")
    parser.add_argument("--backbone", choices=list(BACKBONES), default="resnet29", help="backbone for --profile")
    parser.add_argument("--cuda-graph", action="store_true", help="also time each step captured in a CUDA graph")
    args = parser.parse_args()
    if args.cuda_graph and args.device != "cuda":
        parser.error("--cuda-graph needs --device cuda: CUDA graphs capture GPU kernels")
    device, batch = torch.device(args.device), args.batch
    steps = args.steps or (20 if device.type == "cuda" else 5)
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    warmup = 3 if device.type == "cuda" else 1
    if args.profile:
        return profile(args.profile, args.backbone, batch, device)
    with Record(args.json, args.out) as record:
        record.figures = _report(args, device, steps, warmup)


def _report(args, device: torch.device, steps: int, warmup: int) -> dict:
    """Time every method's step on both backbones, taking turns, and print them; the figures (``--json``)."""
    batch, results, failed = args.batch, [], {}
    for backbone in BACKBONES:
        closures, failed[backbone] = _steps(backbone, batch, device, args.cuda_graph)
        ms = timed(closures, steps, warmup, device)
        results += [{"backbone": backbone, "method": m, "ms_per_step": round(t, 3),
                     "images_per_s": round(batch * 1e3 / t, 1)} for m, t in ms.items()]
    vanilla = {r["backbone"]: r["ms_per_step"] for r in results if r["method"] == "vanilla"}
    for r in results:  # ratio of throughputs = inverse ratio of step times
        r["vs_vanilla"] = round(vanilla[r["backbone"]] / r["ms_per_step"], 3)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"one training step (forward, meta-loss, backward, clip, AdamW), batch {batch}, median of {steps} steps "
          f"after {warmup} warm-up, {where}, torch {torch.__version__}")
    print(f"{'backbone':<10}{'method':<15}{'ms/step':>10}{'images/s':>11}{'vs vanilla':>12}")
    for r in results:
        print(f"{r['backbone']:<10}{r['method']:<15}{r['ms_per_step']:>10.1f}{r['images_per_s']:>11.1f}"
              f"{r['vs_vanilla']:>11.2f}x")
    for backbone, errors in failed.items():
        for method, error in errors.items():
            print(f"{backbone:<10}{method:<15} not captured: {error}")
    summary = {}
    for method in ("mn_ifilm", "mn_ifilm+graph"):  # a graphed step against eager vanilla, as a user would run it
        goal = {r["backbone"]: r["vs_vanilla"] for r in results if r["method"] == method}
        if goal:
            summary[method] = goal
            print(f"goal: {method} >= {GOAL}x eager vanilla's throughput: "
                  + ", ".join(f"{b} {ratio:.2f}x ({'met' if ratio >= GOAL else 'missed'})" for b, ratio in goal.items()))
    return {"device": where, "torch": torch.__version__, "batch": batch, "steps": steps, "warmup": warmup,
            "goal_ratio": GOAL, "mn_ifilm_vs_vanilla": summary["mn_ifilm"], "vs_vanilla_by_method": summary,
            "not_captured": failed, "results": results}


if __name__ == "__main__":
    main()
