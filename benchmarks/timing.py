"""Wall-clock timing shared by the benchmark scripts (median of repeated calls, CUDA synchronised)."""

from __future__ import annotations

import statistics
import time

import torch


def timed(steps: dict, repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median wall time in milliseconds of each of ``steps`` (name: closure), after ``warmup`` untimed calls.

    The closures take turns, one timed call each per round, so a change of load on a shared machine hits them all
    alike. With several closures, each timed call follows an untimed call of the same closure: it then finds the
    caches and the memory allocator as its own previous step left them, as in a training loop, not as the other
    closures did (a vanilla step timed right after a large Meta-Neighborhoods step took up to 3x its own time). A
    single closure follows itself already.
    """
    settle = len(steps) > 1
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if settle:
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}
