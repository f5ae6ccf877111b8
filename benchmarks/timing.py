"""Wall-clock timing shared by the benchmark scripts (median of repeated calls, CUDA synchronised)."""

from __future__ import annotations

import statistics
import time

import torch


def timed(steps: dict, repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median wall time in milliseconds of each of ``steps`` (name: closure), after ``warmup`` untimed calls.

    The closures take turns, one call each per round, so a change of load on a shared machine hits them all alike.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}
