"""Peak resident memory of fit and predict against training rows: MetaNeighborhoodsRegressor vs kNN.

Models and data come from inference_vs_knn.py: the regressor with its defaults apart from a small
``max_epochs`` (the goal is memory, not accuracy) and ``vanilla_fallback=False`` (the network with neighbours),
and StandardScaler + KNeighborsRegressor(k = 10); the synthetic table is seeded, N x 90 (seed 0 for the training
rows, seed 1 for the fresh rows predicted).

Every (model, training rows) case runs in a fresh process (multiprocessing, "spawn"), so nothing an
earlier, larger case left behind can hide or inflate growth. That process generates the training rows and
the rows to predict first, then fits, warms up on 1,000 rows and predicts, the fit and the prediction each
under inference_vs_knn's sampler: the peak growth of the resident set size over the phase's start, read
every millisecond from /proc/self/statm (Linux only), with freed heap handed back to the OS (``malloc_trim``)
before the phase. The inputs exist before either phase starts and are not counted: "fit peak MB" is what
fitting adds on top of its training table, "predict peak MB" what predicting adds on top of the fitted
model and the rows to predict.

Each case runs twice. The memory run pins glibc's mmap threshold at its 128 KiB default
(MALLOC_MMAP_THRESHOLD_), so every large block goes back to the OS once freed and RSS follows what the code
holds: with glibc's sliding threshold, blocks land in the heap, and the regressor's predict peak wandered
between 25 and 70 MB from call to call whatever the training size. Pinning makes each of the regressor's
blocks of rows fault its pages in afresh, so its predictions run 2 to 4x slower; the seconds in the table
come from the other run, with glibc's defaults (its peaks and the memory run's seconds are in ``--json``).

Each model predicts the same 100,000 fresh rows at every training size: a flat "predict peak MB" column
means predict memory does not grow with the training set. One more case fits the regressor on the smallest
size and predicts ``--predict-rows`` fresh rows (default 1,000,000), to show that prediction runs in bounded
blocks (sized to the dictionary, ``estimator_rows.prediction_rows``; the table names them) whatever the
number of rows; what does grow with them is the returned predictions (8 bytes a row, with their float32 blocks
before that).

``--threads N`` caps torch, OpenMP and BLAS threads in every process (default 1: per-thread buffers add
memory, and extra threads on a machine shared with other jobs slow fitting badly).

    python benchmarks/memory.py [--rows 10000 50000 ...] [--predict-rows 1000000] [--fit-epochs 2]
                                [--threads 1] [--json PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import sklearn
import torch
from threadpoolctl import threadpool_limits

from inference_vs_knn import (FEATURES, MB, WARMUP_ROWS, PeakRSS, fitted, knn, meta_neighborhoods, release_memory,
                              search, synthetic)
from record import Record, add_options  # benchmarks/: scripts run from this folder

ROWS = (10_000, 50_000, 100_000, 200_000, 500_000)
PREDICT_ROWS = 100_000  # fresh rows every model predicts at every training size
TRAIN_SEED, PREDICT_SEED = 0, 1
MODELS = ("meta-neighborhoods", "kNN")
MMAP_THRESHOLD = 128 * 1024  # glibc's default; setting it pins it (no sliding upwards)


@dataclass
class Measurement:
    """One model fitted on ``train_rows`` and predicting ``predict_rows``, in one fresh process."""

    model: str
    train_rows: int
    predict_rows: int
    pinned_mmap_threshold: bool
    fit_s: float
    fit_peak_mb: float
    predict_s: float
    predict_peak_mb: float
    predict_input_mb: float  # size of the rows predicted (not part of predict_peak_mb)
    search: str  # how it predicts: the regressor's blocks of rows, kNN's search


def measure(model: str, train_rows: int, predict_rows: int, pinned: bool, epochs: int, threads: int) -> Measurement:
    """In a fresh process: generate the data, then fit and predict, each under its own RSS sampler."""
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        X, y = synthetic(train_rows, seed=TRAIN_SEED)
        X_new, _ = synthetic(predict_rows, seed=PREDICT_SEED)
        release_memory()
        with PeakRSS() as fit_rss:
            estimator, fit_s = fitted(meta_neighborhoods(epochs) if model == MODELS[0] else knn(), X, y)
        estimator.predict(X_new[:WARMUP_ROWS])
        release_memory()
        with PeakRSS() as predict_rss:
            start = time.perf_counter()
            estimator.predict(X_new)
            predict_s = time.perf_counter() - start
    return Measurement(model=model, train_rows=train_rows, predict_rows=predict_rows, pinned_mmap_threshold=pinned,
                       fit_s=fit_s, fit_peak_mb=fit_rss.growth / MB, predict_s=predict_s,
                       predict_peak_mb=predict_rss.growth / MB, predict_input_mb=X_new.nbytes / MB,
                       search=search(estimator))


@contextmanager
def mmap_threshold(pinned: bool):
    """Processes started inside see MALLOC_MMAP_THRESHOLD_ (glibc reads it at start-up) only when ``pinned``."""
    saved = os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
    if pinned:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    try:
        yield
    finally:
        os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        if saved is not None:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved


def in_fresh_process(job: tuple, pinned: bool, epochs: int, threads: int) -> Measurement:
    with mmap_threshold(pinned), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *job, pinned, epochs, threads).result()


def print_report(timed: list[Measurement], memory: list[Measurement], args) -> None:
    print(f"peak RSS growth of fit and predict vs training rows (synthetic, {FEATURES} features; a fresh process "
          f"per run): MetaNeighborhoodsRegressor (defaults, no vanilla fallback, max_epochs {args.fit_epochs}) "
          f"vs StandardScaler + KNeighborsRegressor(k=10); cpu, threads {args.threads}, "
          f"torch {torch.__version__}, scikit-learn {sklearn.__version__}; seconds with glibc's malloc defaults, "
          f"peaks with its mmap threshold pinned at {MMAP_THRESHOLD // 1024} KiB\n")
    print("| model | train rows | fit s | fit peak MB | predict rows | predict s | predict peak MB | prediction |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for t, m in zip(timed, memory):
        print(f"| {m.model} | {m.train_rows:,} | {t.fit_s:.1f} | {m.fit_peak_mb:.1f} | {m.predict_rows:,} "
              f"| {t.predict_s:.2f} | {m.predict_peak_mb:.1f} | {m.search} |")
    inputs = {m.predict_rows: m.predict_input_mb for m in memory}
    print("\nnot counted in predict peak MB, the rows predicted: "
          + ", ".join(f"{rows:,} rows are {mb:.0f} MB" for rows, mb in sorted(inputs.items())))
    small, large = min(args.rows), max(args.rows)
    for model in MODELS:
        peak = {m.train_rows: m.predict_peak_mb for m in memory if m.model == model and m.predict_rows == PREDICT_ROWS}
        print(f"{model}: predict peak with {large:,} / with {small:,} training rows = {peak[large] / peak[small]:.2f}")
    base, many = (next(m for m in memory if m.model == MODELS[0] and m.train_rows == small and m.predict_rows == n)
                  for n in (PREDICT_ROWS, args.predict_rows))
    print(f"{MODELS[0]}: predict peak for {many.predict_rows:,} / for {base.predict_rows:,} rows = "
          f"{many.predict_peak_mb / base.predict_peak_mb:.2f} ({many.predict_peak_mb:.1f} / {base.predict_peak_mb:.1f} "
          f"MB; the {many.predict_rows:,} predictions returned are {many.predict_rows * 8 / MB:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS), help="training rows, one case each")
    parser.add_argument("--predict-rows", type=int, default=1_000_000,
                        help="fresh rows for the bounded-batch case (regressor fitted on the smallest --rows)")
    parser.add_argument("--fit-epochs", type=int, default=2, help="max_epochs of the regressor")
    parser.add_argument("--threads", type=int, default=1, help="torch, OpenMP and BLAS threads in every process")
    add_options(parser)
    args = parser.parse_args()
    if min(args.rows) < 10 * WARMUP_ROWS or args.predict_rows < WARMUP_ROWS:
        parser.error(f"--rows must be at least {10 * WARMUP_ROWS:,} and --predict-rows at least {WARMUP_ROWS:,}")
    with Record(args.json, args.out, threads=args.threads) as record:  # the threads of the children, which measure
        record.figures = _cases(args)


def _cases(args) -> dict:
    """Every case twice (glibc's defaults, then the pinned threshold), in fresh processes; the report printed;
    the figures."""
    jobs = [(model, rows, PREDICT_ROWS) for rows in sorted(args.rows) for model in MODELS]
    jobs.append((MODELS[0], min(args.rows), args.predict_rows))
    runs = {pinned: [] for pinned in (False, True)}
    for job in jobs:  # both runs of a case back to back, so a change of load hits them alike
        for pinned, results in runs.items():
            results.append(in_fresh_process(job, pinned, args.fit_epochs, args.threads))
    print_report(runs[False], runs[True], args)
    return {
        "settings": {**vars(args), "features": FEATURES, "fresh_rows": PREDICT_ROWS, "train_seed": TRAIN_SEED,
                     "predict_seed": PREDICT_SEED, "model_seed": 0, "mmap_threshold": MMAP_THRESHOLD,
                     "torch": torch.__version__, "sklearn": sklearn.__version__},
        "results": [asdict(m) for results in runs.values() for m in results],
    }


if __name__ == "__main__":
    main()
