"""A fit's wall time per epoch and peak memory, Meta-Neighborhoods and vanilla, at the size of the paper's "music" set.

A synthetic regression table of 515,345 x 90 rows (a random two-layer network of the inputs plus noise). Each
setting is fitted for ``--epochs`` epochs in a fresh process; settings take turns over ``--repeats`` rounds and
the medians are reported (of two rounds: their mean), with ratios to vanilla. The seconds are the wall time of the
whole ``fit`` divided by the epochs ("s / one-epoch fit" with one epoch, not an epoch's training alone): they
include its set-up, the validation pass of early stopping (10 % of the rows) and, for the defaults, the vanilla
network the fallback trains beside. Memory, two ways: "fit MB", what fitting adds to the process
over the table it fits (the largest growth of the resident set over the fit's start, sampled every millisecond,
freed heap returned to the OS first, as ``memory.py``); "peak MB", the process's high-water mark (ru_maxrss),
which also holds torch itself and the float64 temporaries of making the table. Before either is measured the child
fits the same setting on 256 rows, so that neither counts what any first fit of a process pays once (torch's
optimiser machinery is imported on first use: about a second and 70 MB). ``--threads`` caps torch, OpenMP
and BLAS threads in each process (default 2, the figures so far; 1 is steadier on a machine shared with other
jobs). Linux only (/proc, glibc's malloc_trim). Every round's figures are kept in ``--json``; a setting whose
process fails (out of memory, say) is reported with its error and left out of the medians, the others go on; one
that fails in only some rounds says so under its row, since its medians then rest on fewer rounds. ``--out PATH``
writes the printed table under a header of what produced it (``record.py``; its threads are the children's).

    python benchmarks/fit_scale.py [--rows 515345] [--epochs 1] [--repeats 3] [--threads 2] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from record import Record, add_options  # benchmarks/: scripts run from this folder

_NO_DROP = {"slot_dropout": 0.0}
SETTINGS = {  # name: estimator parameters (besides the defaults)
    "vanilla": {"dictionary_size": 0},
    "defaults": {},  # with the vanilla fallback: the network with neighbours, then the vanilla one, both trained
    "defaults alone": {"vanilla_fallback": False},  # the network with neighbours only
    "batch draw": {"slot_draw": "batch"},  # one slot-dropout draw per batch: the hidden keys cost nothing
    "full attention": {"top_k": None},  # the defaults with every key attended to
    "S=512 full": {"dictionary_size": 512, "top_k": None, **_NO_DROP},  # the defaults before patience 60
    "S=512 K=32": {"dictionary_size": 512, "top_k": 32, **_NO_DROP},
    "S=4096 K=32": {"dictionary_size": 4096, "top_k": 32, **_NO_DROP},
    "S=16384 K=32": {"dictionary_size": 16384, "top_k": 32, **_NO_DROP},
    "S=16384 full": {"dictionary_size": 16384, "top_k": None, **_NO_DROP},
    "all layers, K=32": {"adapt": "all", "top_k": 32},  # the defaults before last-layer adaptation
    "last layer, K=32": {"adapt": "last", "top_k": 32},
    "batch 1024": {"batch_size": 1024},  # a step's pass over the keys shared by more rows
    "vanilla, batch 1024": {"dictionary_size": 0, "batch_size": 1024},
}


def table(rows: int, features: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float64)
    hidden = np.tanh(X @ rng.normal(size=(features, 32)) / np.sqrt(features))
    return X, hidden @ rng.normal(size=32) + 0.3 * rng.normal(size=rows)


def one(setting: str, rows: int, epochs: int, threads: int) -> dict:
    """Fit one setting here; its seconds, what the fit adds to memory, and this process's peak memory."""
    import torch
    from threadpoolctl import threadpool_limits

    from inference_vs_knn import MB, PeakRSS, release_memory  # benchmarks/: scripts run from this folder
    from meta_neighborhoods import MetaNeighborhoodsRegressor

    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        MetaNeighborhoodsRegressor(max_epochs=1, random_state=0, **SETTINGS[setting]).fit(*table(256, seed=1))
        X, y = table(rows)
        release_memory()
        started = time.perf_counter()
        with PeakRSS() as fit_memory:
            MetaNeighborhoodsRegressor(max_epochs=epochs, random_state=0, **SETTINGS[setting]).fit(X, y)
        seconds = time.perf_counter() - started
    return {"seconds_per_epoch": seconds / epochs, "fit_mb": fit_memory.growth / MB,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads()}


def _child(name: str, args) -> dict:
    """One setting fitted in a fresh process: its figures, or the error that ended it (its last line of stderr)."""
    child = subprocess.run([sys.executable, __file__, "--one", name, "--rows", str(args.rows), "--epochs",
                            str(args.epochs), "--threads", str(args.threads)], capture_output=True, text=True)
    if child.returncode:
        print(child.stderr[-2000:], file=sys.stderr, flush=True)
        last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        return {"error": last}
    return json.loads(child.stdout.strip().splitlines()[-1])


def report(runs: dict, result: dict, args) -> None:
    """The table of medians; a setting that failed in some rounds says in how many: its medians rest on the others."""
    base = result.get("vanilla", {}).get("seconds_per_epoch")
    threads = sorted({r["threads"] for rs in runs.values() for r in rs if "threads" in r})
    print(f"fit on {args.rows:,} x 90 rows, {args.epochs} epoch(s), median of {args.repeats}, "
          f"{'/'.join(map(str, threads))} thread(s)")
    seconds = "s / one-epoch fit" if args.epochs == 1 else f"fit s / {args.epochs} epochs"
    print(f"{'setting':<20}{seconds:>19}{'vs vanilla':>12}{'fit MB':>9}{'peak MB':>10}")
    for name, r in result.items():
        failed = [run["error"] for run in runs[name] if "error" in run]
        if not r:
            print(f"{name:<20}{'failed: ' + failed[-1]}")
            continue
        ratio = f"{r['seconds_per_epoch'] / base:.1f}x" if base else "—"
        print(f"{name:<20}{r['seconds_per_epoch']:>19.1f}{ratio:>12}{r['fit_mb']:>9.0f}{r['peak_mb']:>10.0f}")
        if failed:
            print(f"{'':<20}failed in {len(failed)} of {len(runs[name])} rounds (median of the other "
                  f"{len(runs[name]) - len(failed)}): {failed[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=515_345)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    add_options(parser)
    parser.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)  # the child process's setting
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.rows, args.epochs, args.threads)))
        return
    with Record(args.json, args.out, threads=args.threads) as record:  # the threads of the children, which measure
        record.figures = _rounds(args)


def _rounds(args) -> dict:
    """Every setting fitted ``--repeats`` times, the settings taking turns; the table printed; the figures."""
    runs = {name: [] for name in args.settings}
    for _ in range(args.repeats):
        for name in args.settings:  # interleaved: a change of load hits every setting alike
            runs[name].append(_child(name, args))
            print(f"  {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    result = {name: {key: statistics.median(r[key] for r in done) for key in done[0]} if done else {}
              for name, rs in runs.items() for done in [[r for r in rs if "error" not in r]]}
    report(runs, result, args)
    return {"rows": args.rows, "epochs": args.epochs, "threads": args.threads, "settings": result, "rounds": runs}


if __name__ == "__main__":
    main()
