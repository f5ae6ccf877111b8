"""Prediction throughput and memory: a fitted MetaNeighborhoodsRegressor against k-nearest neighbours.

The baseline is scikit-learn's ``KNeighborsRegressor`` (k = 10, default algorithm) after a
``StandardScaler``, in one Pipeline. The regressor uses its defaults apart from ``max_epochs`` (kept small
so the script runs in minutes on two cores; the goal is prediction speed, not accuracy) and ``verbose``.

* protein (UCI, 45,730 x 9, read from ../shared/data when present): fit on a 90% split, predict the
  other 10% and the full table;
* synthetic (seeded, ROWS x 90, y = a smooth function of five features + noise): fit on all of it,
  predict 50,000 fresh rows; a second pair of models fitted on ROWS / 10 rows predicts the same fresh
  rows, to show whether prediction memory grows with the number of training rows.

Every model is fitted first; then each prediction is timed ``--repeats`` times (default 5), every predictor
of every case taking turns (one prediction each per round, so a change of the machine's load hits them all
alike), each after a 1,000-row warm-up of the same model, and the medians are reported (every round's seconds
are in ``--json``). During each call two memory figures are taken: the peak of ``tracemalloc`` (numpy and
Python allocations; torch tensors are invisible to it) and the peak growth of the resident set size, sampled
every millisecond from /proc/self/statm (Linux only) by a background thread; their medians are reported too.
Freed heap is handed back to the OS (``malloc_trim``) before each call, so RSS growth is not hidden by memory
that an earlier step left with the allocator. "model MB" is the pickled size. The protein table is skipped
when its file is not found.
``--threads N`` caps torch, OpenMP and BLAS threads for both predictors; on a machine shared with other
jobs, ``--threads 1`` avoids oversubscribed threads (two torch threads on two busy cores made training
about 25x slower in one test). ``--out PATH`` writes the printed tables under a header of what produced them
(``record.py``: commit, command, versions, threads); ``--json`` carries the same record under "provenance".

    python benchmarks/inference_vs_knn.py [--json PATH] [--out PATH] [--rows 500000] [--fit-epochs N] [--threads N]
        [--repeats 5] [--fresh-rows 50000]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import pickle
import statistics
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass

import numpy as np
import sklearn
import torch
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from meta_neighborhoods.datasets.files import DataFileError, shared_data_dir
from meta_neighborhoods.datasets.tables import load_table
from meta_neighborhoods.estimator_rows import prediction_rows
from meta_neighborhoods.estimators import MetaNeighborhoodsRegressor
from record import Record, add_options  # benchmarks/: scripts run from this folder

FEATURES = 90  # synthetic table width (as YearPredictionMSD)
FRESH_ROWS = 50_000  # rows predicted on the synthetic table (--fresh-rows)
WARMUP_ROWS = 1_000
MB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")
LIBC = ctypes.CDLL("libc.so.6")


@dataclass
class Measurement:
    """One predictor on one prediction set."""

    case: str
    model: str
    train_rows: int
    predict_rows: int
    fit_s: float
    predict_s: float  # the median of predict_s_rounds
    rows_per_s: float  # predict_rows / predict_s
    peak_rss_mb: float  # medians over the rounds
    traced_peak_mb: float
    model_mb: float
    rmse: float
    search: str  # the neighbour search kNN's algorithm='auto' picked; for MN the rows it predicts at a time
    predict_s_rounds: list[float]  # every round's seconds, in the order they ran


# -- data and models ------------------------------------------------------------------------------


def synthetic(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal features; the target depends smoothly on the first five, plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, FEATURES))
    y = (np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + np.exp(-X[:, 3] ** 2) + np.tanh(X[:, 4])
         + 0.1 * rng.standard_normal(rows))
    return X, y


def knn():
    return make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=10))


def meta_neighborhoods(epochs: int) -> MetaNeighborhoodsRegressor:
    """The defaults' network with neighbours, always kept: the fallback could keep the vanilla network, whose
    prediction is not the one this benchmark measures."""
    return MetaNeighborhoodsRegressor(max_epochs=epochs, random_state=0, vanilla_fallback=False)


def search(model) -> str:
    if isinstance(model, MetaNeighborhoodsRegressor):  # blocks sized to the dictionary it was fitted with
        return f"blocks of {prediction_rows(model.model_)}"
    return model[-1]._fit_method


def fitted(model, X, y):
    """The model fitted on (X, y), and the seconds that took."""
    start = time.perf_counter()
    model.fit(X, y)
    return model, time.perf_counter() - start


# -- memory ---------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakRSS:
    """Context manager: the largest RSS growth over the block, sampled by a thread every millisecond."""

    def __init__(self, interval_s: float = 1e-3):
        self.interval_s, self.growth = interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.growth = max(self.growth, rss_bytes() - self.baseline)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.baseline = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.growth = max(self.growth, rss_bytes() - self.baseline)


def release_memory() -> None:
    """Collect garbage and return the allocator's free heap to the OS, so RSS starts from what is in use."""
    gc.collect()
    LIBC.malloc_trim(0)


def pickled_mb(model) -> float:
    class Counter:
        size = 0

        def write(self, data) -> None:
            self.size += memoryview(data).nbytes

    counter = Counter()
    pickle.dump(model, counter, protocol=5)
    return counter.size / MB


# -- the measurements -----------------------------------------------------------------------------


def predict_once(model, X, y) -> tuple[float, int, int, float]:
    """Predict X once after a warm-up: the seconds, the RSS growth and traced peak (bytes), and the RMSE."""
    model.predict(X[:WARMUP_ROWS])
    release_memory()
    tracemalloc.start()
    with PeakRSS() as rss:
        start = time.perf_counter()
        prediction = model.predict(X)
        seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, rss.growth, traced_peak, float(np.sqrt(np.mean((prediction - y) ** 2)))


def measure(cases: list[tuple], repeats: int) -> list[Measurement]:
    """Every predictor of every case ((name, {model name: (model, fit seconds)}, training rows, X, y)) predicting X
    ``repeats`` times, all taking turns, one prediction each per round; the medians."""
    rounds = {(case, name): [] for case, pair, *_ in cases for name in pair}
    for _ in range(repeats):
        for case, pair, _, X, y in cases:
            for name, (model, _) in pair.items():
                rounds[case, name].append(predict_once(model, X, y))
    results = []
    for case, pair, train_rows, X, _ in cases:
        for name, (model, fit_s) in pair.items():
            seconds, rss, traced, rmse = zip(*rounds[case, name])
            median = statistics.median(seconds)
            results.append(Measurement(
                case=case, model=name, train_rows=train_rows, predict_rows=len(X), fit_s=fit_s, predict_s=median,
                rows_per_s=len(X) / median, peak_rss_mb=statistics.median(rss) / MB,
                traced_peak_mb=statistics.median(traced) / MB, model_mb=pickled_mb(model), rmse=rmse[-1],
                search=search(model), predict_s_rounds=list(seconds)))
    return results


def fit_pair(X, y, epochs: int) -> dict:
    return {"MN": fitted(meta_neighborhoods(epochs), X, y), "kNN": fitted(knn(), X, y)}


# -- the two tables -------------------------------------------------------------------------------


def protein_cases(epochs: int) -> tuple[list[tuple], str | None]:
    """The protein table's two cases (``measure``), or none and why (no data folder, no protein file)."""
    if shared_data_dir() is None:
        return [], "../shared/data not found"
    try:
        table = load_table("protein")
    except DataFileError as error:
        return [], str(error)
    X_train, X_test, y_train, y_test = train_test_split(table.X, table.y, test_size=0.1, random_state=0)
    pair = fit_pair(X_train, y_train, epochs)
    return [("protein, held-out 10%", pair, len(X_train), X_test, y_test),
            ("protein, full table", pair, len(X_train), table.X, table.y)], None


def synthetic_cases(rows: int, epochs: int, fresh: int) -> list[tuple]:
    """The main comparison (fit on ``rows``, predict ``fresh`` new rows), then the same fresh rows predicted by
    models fit on rows / 10."""
    X, y = synthetic(rows, seed=0)
    X_new, y_new = synthetic(fresh, seed=1)
    small = rows // 10
    return [("synthetic", fit_pair(X, y, epochs), rows, X_new, y_new),
            ("synthetic, fewer training rows", fit_pair(X[:small], y[:small], epochs), small, X_new, y_new)]


# -- report ---------------------------------------------------------------------------------------


def ratio(results: list[Measurement], case: str) -> float:
    """MN / kNN throughput on one case."""
    speed = {r.model: r.rows_per_s for r in results if r.case == case}
    return speed["MN"] / speed["kNN"]


def print_throughput(results: list[Measurement]) -> None:
    print(f"{'case':<24}{'model':<6}{'train rows':>11}{'pred rows':>10}{'fit s':>8}{'pred s':>8}"
          f"{'rows/s':>11}{'MN/kNN':>8}{'RSS+ MB':>9}{'traced MB':>10}{'model MB':>9}{'RMSE':>8}  search or blocks")
    for r in results:
        speedup = f"{ratio(results, r.case):.1f}x" if r.model == "MN" else ""
        print(f"{r.case:<24}{r.model:<6}{r.train_rows:>11,}{r.predict_rows:>10,}{r.fit_s:>8.1f}{r.predict_s:>8.2f}"
              f"{r.rows_per_s:>11,.0f}{speedup:>8}{r.peak_rss_mb:>9.1f}{r.traced_peak_mb:>10.1f}"
              f"{r.model_mb:>9.1f}{r.rmse:>8.3f}  {r.search}")


def print_memory_scaling(scaling: list[Measurement]) -> None:
    print(f"\nprediction memory vs training rows ({scaling[0].predict_rows:,} fresh synthetic rows predicted; MB)")
    print(f"{'train rows':>11}{'MN RSS+':>10}{'MN traced':>11}{'MN model':>10}"
          f"{'kNN RSS+':>10}{'kNN traced':>11}{'kNN model':>10}")
    for rows in sorted({r.train_rows for r in scaling}):
        by_model = {r.model: r for r in scaling if r.train_rows == rows}
        mn, nn = by_model["MN"], by_model["kNN"]
        print(f"{rows:>11,}{mn.peak_rss_mb:>10.1f}{mn.traced_peak_mb:>11.1f}{mn.model_mb:>10.1f}"
              f"{nn.peak_rss_mb:>10.1f}{nn.traced_peak_mb:>11.1f}{nn.model_mb:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    parser.add_argument("--rows", type=int, default=500_000, help="synthetic training rows")
    parser.add_argument("--fit-epochs", type=int, help="max_epochs of the regressor (default 2 synthetic, 20 protein)")
    parser.add_argument("--threads", type=int, help="torch, OpenMP and BLAS threads (default: the libraries' own)")
    parser.add_argument("--fresh-rows", type=int, default=FRESH_ROWS,
                        help="new synthetic rows each synthetic model predicts (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="predictions of each case by each model (medians)")
    args = parser.parse_args()
    if args.rows < 10 * WARMUP_ROWS:
        parser.error(f"--rows must be at least {10 * WARMUP_ROWS:,}")
    if args.fresh_rows < WARMUP_ROWS:
        parser.error(f"--fresh-rows must be at least {WARMUP_ROWS:,}, the warm-up's rows")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    with Record(args.json, args.out) as record:
        record.figures = _report(args)


def _report(args) -> dict:
    """Fit every model, time the predictions interleaved and print the tables; the figures (``--json``)."""
    with threadpool_limits(limits=args.threads):
        protein, skipped = protein_cases(args.fit_epochs or 20)
        measured = measure(protein + synthetic_cases(args.rows, args.fit_epochs or 2, args.fresh_rows), args.repeats)
    results = [r for r in measured if r.case != "synthetic, fewer training rows"]
    scaling = sorted((r for r in measured if r.case.startswith("synthetic")), key=lambda r: r.train_rows)

    print(f"predict throughput and memory, MetaNeighborhoodsRegressor (defaults, max_epochs "
          f"{args.fit_epochs or '20 protein / 2 synthetic'}, predicting in blocks sized to its dictionary) vs "
          "StandardScaler + "
          f"KNeighborsRegressor(k=10); cpu, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"scikit-learn {sklearn.__version__}; median of {args.repeats} interleaved rounds")
    if skipped:
        print(f"protein: skipped, {skipped}")
    print_throughput(results)
    print_memory_scaling(scaling)
    goal = ratio(results, "synthetic")
    print(f"\ngoal: MN predict throughput >= 10x kNN's: {goal:.1f}x on synthetic ({args.rows:,} training rows) "
          f"- {'met' if goal >= 10 else 'NOT met'}"
          + "".join(f"; {ratio(results, case):.1f}x on {case}" for case, *_ in protein))
    return {
        "settings": {**vars(args), "torch_threads": torch.get_num_threads(),
                     "torch": torch.__version__, "sklearn": sklearn.__version__},
        "results": [asdict(r) for r in results],
        "memory_vs_training_rows": [asdict(r) for r in scaling],
        "goal_ratio_synthetic": goal,
    }


if __name__ == "__main__":
    main()
