"""Choose the estimators' defaults by one rule over many tables, never per table (issue 10, item 3).

Every candidate setting of MetaNeighborhoodsRegressor runs the repeated-CV protocol of ``regress`` (the same
folds for every method, ``--seeds`` repeats) beside the vanilla MLP and kNN, on every table given. Results go
to ``OUT/<table>.json`` (one error per method for every seed x fold), so that an interrupted sweep resumes and
several processes can share the tables; ``--report`` then prints the comparison and applies the rule:

    lowest geometric mean of MN / vanilla over the tables, among the candidates that are never worse than
    vanilla by more than 2 % on any table; ties (a geometric mean within 0.005 of the lowest, about 0.5 %) go
    to the cheaper candidate, by the seconds on file: comparable only for candidates run side by side.

    python benchmarks/defaults_sweep.py --out runs/sweep --tables gom boston ... [--seeds 3] [--max-rows 1500]
    python benchmarks/defaults_sweep.py --out runs/sweep --report

A training setting that vanilla shares (``--patience``, ``--batch-size``, ``--ema-decay``, ``--input-transform``,
``--refine``)
runs into its own folder, beside the base one on the same folds, and is compared with
``--out BASE --compare-training OTHER CANDIDATE``.

More repeats of a finished sweep, on its rows, go to a folder of their own and join it in the report:

    python benchmarks/defaults_sweep.py --out runs/more --tables ... --seed 3 --seeds 5 --rows-seed 0
    python benchmarks/defaults_sweep.py --out runs/sweep --more-seeds runs/more --table2 CANDIDATE
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer
from torch import nn

from meta_neighborhoods import MetaNeighborhoodsRegressor
from meta_neighborhoods.datasets.tables import load_table
from meta_neighborhoods.estimator_settings import check_settings
from meta_neighborhoods.experiments.cross_validation import (TABLE_METHODS, available_methods, cross_validate,
                                                             repeated_folds, subset_rows, with_params)
from meta_neighborhoods.experiments.reports import won_tied_lost
from meta_neighborhoods.heads import PeriodicMLPHead
from meta_neighborhoods.io import lock, write_json
from meta_neighborhoods.provenance import provenance
from meta_neighborhoods.significance import compare, shown_p
from meta_neighborhoods.validation import ConfigError

_FULL = {"top_k": None, "slot_dropout": 0.0}


def _hidden_layers(n_features: int) -> nn.Module:
    """The default MLP's hidden layers (128, 128) as the extractor, a linear head on them: the same network as
    vanilla, with keys in its last hidden layer instead of among the rows (the authors' setting for images)."""
    return nn.Sequential(nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())


_LAST_LAYER = {"dictionary_size": 4096, "top_k": 128, "slot_dropout": 0.5, "adapt": "last", "step_size": "layer"}
_FEATURE_KEYS = {**_LAST_LAYER, "hidden_layer_sizes": (), "extractor": _hidden_layers}  # linear head: last = all
CANDIDATES = {  # complete settings of the dictionary (the estimators' other defaults as they are, but the network
    # with neighbours is kept whatever its validation loss unless a candidate says vanilla_fallback)
    "S128": {"dictionary_size": 128, **_FULL},
    "S512": {"dictionary_size": 512, **_FULL},
    "S512-drop": {"dictionary_size": 512, "top_k": None, "slot_dropout": 0.5},
    "S512-k32": {"dictionary_size": 512, "top_k": 32, "slot_dropout": 0.0},
    "S4096-k32": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.0},
    "S4096-k32-drop": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.5},
    "S4096-k128-drop": {"dictionary_size": 4096, "top_k": 128, "slot_dropout": 0.5},
    "S4096-k32-drop-loo": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.5, "leave_one_out": True},
    "S4096-k32-drop-fixed": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.5, "learn_dictionary": False},
    "S4096-k32-drop-last": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.5, "adapt": "last"},
    "S4096-k128-drop-last": {"dictionary_size": 4096, "top_k": 128, "slot_dropout": 0.5, "adapt": "last"},
    "S4096-k32-drop-layer": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.5, "step_size": "layer"},
    "S4096-k128-drop-last-diag": {"dictionary_size": 4096, "top_k": 128, "slot_dropout": 0.5, "adapt": "last",
                                  "step_size": "diagonal"},
    "S4096-k128-drop-last-layer": _LAST_LAYER,  # the defaults' network, always kept
    "S4096-k128-drop-last-layer-fallback": {**_LAST_LAYER, "vanilla_fallback": True},  # the defaults now
    "S4096-k8-drop-last-layer": {**_LAST_LAYER, "top_k": 8},
    "S4096-k32-drop-last-layer": {**_LAST_LAYER, "top_k": 32},
    "S4096-full-drop-last-layer": {**_LAST_LAYER, "top_k": None},
    "S4096-k128-drop-last-layer-metric": {**_LAST_LAYER, "learn_metric": True},
    "S4096-k128-drop75-last-layer": {**_LAST_LAYER, "slot_dropout": 0.75},
    "S4096-k128-drop-last-layer-batch-draw": {**_LAST_LAYER, "slot_draw": "batch"},
    "S4096-k128-drop-last-layer-keys01": {**_LAST_LAYER, "key_lr_scale": 0.1},
    "S4096-k128-drop-last-layer-b512": {**_LAST_LAYER, "batch_size": 512},
    "S4096-k128-drop-last-layer-b1024": {**_LAST_LAYER, "batch_size": 1024},
    "S4096-k128-drop-last-layer-2step": {**_LAST_LAYER, "inner_steps": 2},
    "S4096-k128-drop-last-layer-fixed-loo": {**_LAST_LAYER, "learn_dictionary": False, "leave_one_out": True},
    "S4096-k128-drop-features": _FEATURE_KEYS,
    "S4096-k128-drop-features-euclid": {**_FEATURE_KEYS, "similarity": "euclidean"},
    "S4096-k32-euclid": {"dictionary_size": 4096, "top_k": 32, "slot_dropout": 0.0, "similarity": "euclidean"},
}
TOLERANCE, TIE = 1.02, 0.005
BASELINES = ("hist_gradient_boosting", "lightgbm", "realmlp_td")  # rivals run on the same folds, not candidates


def _geometric_mean(ratios) -> float:
    return math.exp(np.mean(np.log(list(ratios))))


def _decay(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _quantile(factory):
    """``factory``'s estimator behind a quantile transform of each feature to a normal distribution, fitted on the
    training fold: an input transform for any MLP on tables, given to vanilla and MN alike."""
    def wrapped(*, seed: int, n_train: int, params: dict):
        transform = QuantileTransformer(n_quantiles=min(1000, n_train), output_distribution="normal",
                                        subsample=None, random_state=seed)
        return make_pipeline(transform, factory(seed=seed, n_train=n_train, params=params))
    return wrapped


def _read(path: Path) -> dict:
    """A sweep file, checked before use: a list of numbers per method and, once a run is in, one repeat seed per
    error. It is read, never executed; anything else stops with a line that names the file."""
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SystemExit(f"{path}: not a readable sweep file ({error})")
    lists = d.get("folds") if isinstance(d, dict) and isinstance(d.get("seconds"), dict) else None
    ok = isinstance(lists, dict) and all(isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)
                                         for v in lists.values())
    ok = ok and set(lists) <= set(d["seconds"]) and all(isinstance(x, (int, float)) for x in d["seconds"].values())
    if ok and "fold_seeds" in d:
        seeds = d["fold_seeds"]
        ok = (isinstance(seeds, list) and seeds and all(isinstance(x, int) for x in seeds)
              and all(len(v) == len(seeds) for v in lists.values()) and isinstance(d.get("params", {}), dict)
              and all(isinstance(d.get(k), int) for k in ("n", "folds_k")))  # the first sweeps kept no params
    if not ok:
        raise SystemExit(f"{path} is not a sweep file: it needs 'folds' (a list of errors per method), 'seconds', and "
                         "with them 'fold_seeds' (one per error), 'n' and 'folds_k'; 'seconds' a number per method")
    return d


def _rows_seed(run: dict) -> int:
    """The seed that picked a sweep file's rows: recorded, or (files from before --rows-seed) its first repeat's."""
    return run.get("rows_seed", run["fold_seeds"][0])


def run_table(name: str, out: Path, candidates: list[str], args) -> None:
    path = out / f"{name}.json"
    done = _read(path) if path.exists() else {"folds": {}, "seconds": {}}
    networks = {"vanilla": TABLE_METHODS["vanilla"],  # a candidate's vanilla_fallback is its own, else False
                **{c: with_params(TABLE_METHODS["meta_neighborhoods"], **{"vanilla_fallback": False, **CANDIDATES[c]})
                   for c in candidates}}
    if args.input_transform == "quantile":
        networks = {method: _quantile(factory) for method, factory in networks.items()}
    if args.input_transform == "periodic":
        networks = {method: with_params(factory, head=PeriodicMLPHead) for method, factory in networks.items()}
    if args.refine is not None:  # recorded as "refine", as the sweeps before the estimator took it were
        networks = {method: with_params(factory, refine_factor=args.refine) for method, factory in networks.items()}
    todo = {"knn": TABLE_METHODS["knn"], **networks, **{name: available_methods()[name] for name in args.baselines}}
    todo = {method: factory for method, factory in todo.items() if method not in done["folds"]}
    if not todo:
        return
    settings = (("max_epochs", args.max_epochs), ("n_iter_no_change", args.patience), ("batch_size", args.batch_size),
                ("validation_fraction", args.validation_fraction))
    params = {key: value for key, value in settings if value is not None}  # every MLP's, vanilla's too: own folder
    params["ema_decay"] = args.ema_decay  # always recorded: its default changed from None to 0.99
    recorded = {**params, "input_transform": args.input_transform} if args.input_transform != "none" else params
    recorded = {**recorded, "refine": args.refine} if args.refine is not None else recorded
    rows_seed = args.seed if args.rows_seed is None else args.rows_seed
    table = subset_rows(load_table(name, args.data_dir), args.max_rows, rows_seed)
    run = {"params": recorded, "n": len(table.y), "rows_seed": rows_seed, "folds_k": args.folds,
           "fold_seeds": [seed for seed, *_ in repeated_folds(len(table.y), args.folds, args.seed, args.seeds)]}
    _check_same_run(done, run, path, args)
    cv = cross_validate(table, todo, folds=args.folds, seed=args.seed, seeds=args.seeds, params=params,
                        progress=not args.quiet)
    with lock(out, wait=True):  # one writer at a time: what other processes wrote meanwhile is read, checked again
        # and kept, where two that finish methods of one table at once would both read its file and the second to
        # write would drop the first one's methods
        done = _read(path) if path.exists() else done
        _check_same_run(done, run, path, args)
        done["folds"].update(cv["folds"])
        done.setdefault("kept", {}).update(cv["kept"])  # the network each fold kept, for candidates with the fallback
        done.setdefault("validation_losses", {}).update(cv["validation_losses"])  # to replay other choices
        done["seconds"].update(cv["seconds"])
        done.setdefault("provenance", {}).update(dict.fromkeys(cv["folds"], provenance()))  # threads, versions
        done.update(run)
        write_json(path, done)


def _check_same_run(done: dict, run: dict, path: Path, args) -> None:
    """Refuse to add methods to a sweep file run on other settings, rows or folds (``run``: this run's): their
    errors would be compared fold for fold with errors of other folds. Checked again under the writer's lock, as
    another process may have written the file meanwhile."""
    if done.get("params", run["params"]) != run["params"]:
        raise SystemExit(f"{path} was run with {done['params']}, not {run['params']}: give another --out")
    if "fold_seeds" not in done:
        return
    if _rows_seed(done) != run["rows_seed"]:
        raise SystemExit(f"{path} holds the rows of --rows-seed {_rows_seed(done)}, not {run['rows_seed']}: "
                         "give another --out")
    if done["n"] != run["n"]:  # other rows: the folds would not be the ones on file
        raise SystemExit(f"{path} holds {done['n']} rows, not the {run['n']} that --max-rows {args.max_rows} "
                         "leaves: give the --max-rows it was run with, or another --out")
    if (done["folds_k"], done["fold_seeds"]) != (run["folds_k"], run["fold_seeds"]):
        raise SystemExit(f"{path} holds {done['folds_k']}-fold CV repeated over seeds {sorted(set(done['fold_seeds']))}"
                         f", not --folds {args.folds} --seed {args.seed} --seeds {args.seeds}: every method must run "
                         "on the same folds; further repeats go to a folder of their own (see --more-seeds)")


def load(out: Path, more: Path | None = None) -> dict[str, dict]:
    """The sweep's tables by name; with ``more``, a folder of further repeats on the same rows (run with ``--seed 3
    --rows-seed 0`` after a ``--seed 0`` sweep, say): each method's errors there appended to its own, for the
    methods both folders have (those left out named on stderr). A table ``more`` lacks stops it: a rule judged
    on fewer tables is another rule."""
    tables = {p.stem: _read(p) for p in sorted(out.glob("*.json"))}
    if more is None:
        return tables
    merged = {}
    for name, d in tables.items():
        path = more / f"{name}.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: {more} holds no further repeats of {out / path.name}")
        e = _read(path)
        same = [(x["n"], x["folds_k"], x.get("params"), _rows_seed(x)) for x in (d, e)]
        if same[0] != same[1] or set(d["fold_seeds"]) & set(e["fold_seeds"]):
            raise SystemExit(f"{path} does not hold further repeats of {out / path.name}: "
                             "other rows, settings or seeds")
        methods = [m for m in d["folds"] if m in e["folds"]]
        if len(methods) < len(d["folds"]):
            print(f"{name}: {more} has no repeats of {', '.join(sorted(set(d['folds']) - set(methods)))}; "
                  "left out", file=sys.stderr)
        merged[name] = {**d, "folds": {m: d["folds"][m] + e["folds"][m] for m in methods},
                        "seconds": {m: d["seconds"][m] + e["seconds"][m] for m in methods},
                        "fold_seeds": d["fold_seeds"] + e["fold_seeds"]}
    return merged


def report(out: Path, more: Path | None = None) -> None:
    tables = load(out, more)
    names = sorted({m for t in tables.values() for m in t["folds"]} - {"knn", "vanilla", *BASELINES},
                   key=lambda c: (list(CANDIDATES).index(c) if c in CANDIDATES else len(CANDIDATES), c))
    ratios, cost, rows = {}, {}, []
    for candidate in names:
        seen = {t: d for t, d in tables.items() if candidate in d["folds"]}
        summaries = {t: compare({k: d["folds"][k] for k in ("knn", "vanilla", candidate)}, candidate, d["folds_k"],
                                baseline="vanilla") for t, d in seen.items()}
        ratios[candidate] = {t: s["ratio"][candidate] for t, s in summaries.items()}
        cost[candidate] = float(np.mean([d["seconds"][candidate] / d["seconds"]["vanilla"] for d in seen.values()]))
        below_knn = sum(s["mean"][candidate] < s["mean"]["knn"] for s in summaries.values())
        tested = [(s["ratio"][candidate], s["p_values"]["vanilla"]) for s in summaries.values()]
        gains, losses = (sum(p is not None and p < 0.05 and (ratio < 1) == below for ratio, p in tested)
                         for below in (True, False))
        r = list(ratios[candidate].values())
        rows.append([candidate, str(len(r)), f"{_geometric_mean(r):.4f}", f"{max(r):.3f}",
                     f"{sum(x < 1 for x in r)}", f"{gains} / {losses}", f"{below_knn}", f"{cost[candidate]:.1f}"])
    print("| candidate | tables | geo-mean MN/vanilla | worst | below vanilla | p < 0.05 below / above | below kNN | "
          "fit time / vanilla |\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\n| table | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for t in tables:
        print(f"| {t} | " + " | ".join(f"{ratios[c][t]:.3f}" if t in ratios[c] else "" for c in names) + " |")
    complete = [c for c in names if len(ratios[c]) == len(tables)]
    strict = [c for c in complete if max(ratios[c].values()) <= TOLERANCE]
    safe = strict or complete
    if safe:
        score = {c: _geometric_mean(ratios[c].values()) for c in safe}
        best = min(score.values())
        tied = [c for c in safe if score[c] <= best + TIE]
        chosen = min(tied, key=cost.get)
        among = f"{safe} (never > {TOLERANCE:.2f} x vanilla)" if strict else \
            f"{safe} (none is never > {TOLERANCE:.2f} x vanilla: all complete ones)"
        print(f"\nRule: among {among}, lowest geometric mean within {TIE}, "
              f"then cheapest: {chosen}")
        if len(tied) > 1:
            print(f"Tied within {TIE}: {', '.join(tied)}; the cost decided, from the seconds on file, which compare "
                  "only candidates that ran side by side in one process")
        print("A choice that changes the defaults must also keep the classifier at least vanilla's accuracy on "
              "digits (benchmarks/classifier_defaults.py); docs/results/defaults.md says where that overruled it.")


def table2(out: Path, candidate: str, more: Path | None = None, alone: str | None = None) -> None:
    """Table 2 from the sweep: every method on the same folds, ``candidate`` as Meta-Neighborhoods (MN) and, given,
    ``alone`` as "MN alone" (its network with neighbours, kept whatever it validates). "resolves" is the smallest
    MN / vanilla gap the corrected test could call significant on that table (``compare``'s ``resolvable`` over
    vanilla's mean)."""
    tables = load(out, more)
    methods = ["knn", "vanilla", candidate, *([alone] if alone else []), *BASELINES]
    seen = [m for m in methods if all(m in d["folds"] for d in tables.values())]
    if not {"knn", "vanilla", candidate, alone} - {None} <= set(seen):
        raise SystemExit(f"--table2 {candidate} {alone or ''}: not every table of {out} has kNN, vanilla and "
                         "the candidates given")
    names = {candidate: "MN", alone: "MN alone"}
    ratios = [m for m in (candidate, alone) if m in seen]
    print("| data set | n | " + " | ".join(names.get(m, m) for m in seen)
          + "".join(f" | {names[m]} / vanilla" for m in ratios)
          + " | MN won/tied/lost | p vs vanilla | p vs kNN | resolves |\n|---|---|"
          + "---|" * (len(seen) + len(ratios) + 4))
    for name, d in tables.items():
        s = compare({m: d["folds"][m] for m in seen}, candidate, d["folds_k"], baseline="vanilla")
        cells = [f"{s['mean'][m]:.4g} ± {s['std'][m]:.2g}" for m in seen]
        p = {m: s["p_values"][m] for m in ("vanilla", "knn")}
        print(f"| {name} | {d['n']} | " + " | ".join(cells) + "".join(f" | {s['ratio'][m]:.3f}" for m in ratios)
              + f" | {won_tied_lost(s, 'vanilla', len(d['fold_seeds']))} | "
              + " | ".join(shown_p(v, 2) for v in p.values())
              + f" | {_resolves(s['resolvable']['vanilla'], s['mean']['vanilla'])} |")


def _resolves(gap: float | None, mean: float) -> str:
    return "—" if gap is None else f"±{100 * gap / mean:.1f} %"  # None: the errors are identical, no test


def head_to_head(out: Path, reference: str, candidate: str, more: Path | None = None) -> None:
    """``candidate`` against ``reference`` (both Meta-Neighborhoods settings) on every table both ran: the ratio of
    their mean errors, the folds the candidate wins and the corrected test between the two, beside each one's
    ratio to vanilla. It tells whether a change moved a table at all, which the ratios to vanilla alone cannot."""
    print(f"| table | {reference} / vanilla | {candidate} / vanilla | {candidate} / {reference} | lower/equal/higher"
          " | p |"
          "\n|---|---|---|---|---|---|")
    for name, d in load(out, more).items():
        if not {reference, candidate} <= set(d["folds"]):
            continue
        s = compare({m: d["folds"][m] for m in ("vanilla", reference, candidate)}, candidate, d["folds_k"],
                    baseline="vanilla")
        p = s["p_values"][reference]
        print(f"| {name} | {s['ratio'][reference]:.3f} | {s['ratio'][candidate]:.3f} | "
              f"{s['mean'][candidate] / s['mean'][reference]:.3f} | "
              f"{won_tied_lost(s, reference, len(d['fold_seeds']))} | {shown_p(p, 2)} |")


def compare_training(base: Path, other: Path, candidate: str) -> None:
    """A training setting shared by vanilla and MN (another --out), table by table: each method's MSE under ``other``
    over its MSE under ``base``, on the same folds (the repeats both ran, where one ran fewer). Adopted where it
    lowers vanilla's geometric mean by more than the tie and MN's does not rise by more than the tie: the
    baseline must gain, so that a setting that helps the neighbours alone is an MN candidate, not a training
    setting; and MN must not lose."""
    shared = sorted({p.stem for p in base.glob("*.json")} & {p.stem for p in other.glob("*.json")})
    print(f"| table | vanilla {base.name} | vanilla {other.name} | ratio | MN {base.name} | MN {other.name} | ratio | "
          f"MN/vanilla {base.name} | MN/vanilla {other.name} |\n|---|---|---|---|---|---|---|---|---|")
    ratios = {"vanilla": [], candidate: []}
    for name in shared:
        runs = [_read(folder / f"{name}.json") for folder in (base, other)]
        if not all(m in run["folds"] for run in runs for m in ratios):  # a screen not run that far
            print(f"{name}: left out, not every folder has both vanilla and {candidate}", file=sys.stderr)
            continue
        common = min(len(run["fold_seeds"]) for run in runs)  # a screen of fewer repeats: the ones both ran
        if len({(run["n"], run["folds_k"], _rows_seed(run), tuple(run["fold_seeds"][:common])) for run in runs}) > 1:
            raise SystemExit(f"{name}: the two folders did not run the same folds")
        mean = {m: [float(np.mean(run["folds"][m][:common])) for run in runs] for m in ratios}
        cells = []
        for m in ratios:
            ratios[m].append(mean[m][1] / mean[m][0])
            cells += [f"{mean[m][0]:.4g}", f"{mean[m][1]:.4g}", f"{mean[m][1] / mean[m][0]:.3f}"]
        cells += [f"{mean[candidate][i] / mean['vanilla'][i]:.3f}" for i in (0, 1)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    geo = {m: _geometric_mean(v) for m, v in ratios.items()}
    verdict = "adopt" if geo["vanilla"] < 1 - TIE and geo[candidate] < 1 + TIE else "keep the base"
    print(f"\nGeometric mean of {other.name} / {base.name} over {len(ratios['vanilla'])} tables: "
          + ", ".join(f"{m} {g:.4f}" for m, g in geo.items()) + f": {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tables", nargs="*", default=[])
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--baselines", nargs="*", default=[], choices=BASELINES,
                        help="also run these rivals on the same folds (for the regenerated Table 2)")
    parser.add_argument("--data-dir")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=1500)
    parser.add_argument("--rows-seed", type=int, help="the seed that picks the --max-rows rows (default: --seed); "
                        "--seed 3 --rows-seed 0 adds repeats 3, 4, ... on the rows of a --seed 0 sweep")
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--patience", type=int, help="n_iter_no_change of early stopping, for vanilla and MN alike")
    parser.add_argument("--batch-size", type=int, help="batch_size, for vanilla and MN alike")
    parser.add_argument("--validation-fraction", type=float,
                        help="validation_fraction of early stopping, for vanilla and MN alike")
    parser.add_argument("--ema-decay", type=_decay, default=MetaNeighborhoodsRegressor().ema_decay,
                        help="ema_decay (a moving average of the weights; 'none': without), for vanilla and MN alike")
    parser.add_argument("--input-transform", choices=("none", "quantile", "periodic"), default="none",
                        help="a transform of the features before vanilla and MN alike (kNN keeps its scaling)")
    parser.add_argument("--refine", type=float, metavar="FACTOR",
                        help="refine_factor: after early stopping, train on from the kept weights at FACTOR times the "
                             "learning rate until early stopping ends that too, for vanilla and MN alike")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--table2", nargs="+", metavar="CANDIDATE",
                        help="print Table 2 with this candidate as MN (and a second as 'MN alone')")
    parser.add_argument("--compare-training", nargs=2, metavar=("OTHER", "CANDIDATE"),
                        help="compare a training setting run into folder OTHER with --out, for vanilla and CANDIDATE")
    parser.add_argument("--more-seeds", type=Path, metavar="DIR",
                        help="with --report, --table2 or --head-to-head: append DIR's repeats on the same rows "
                             "(see --rows-seed)")
    parser.add_argument("--head-to-head", nargs=2, metavar=("REFERENCE", "CANDIDATE"),
                        help="compare two candidates in --out table by table, with the corrected test between them")
    args = parser.parse_args()
    if args.head_to_head:
        head_to_head(args.out, *args.head_to_head, args.more_seeds)
        return
    if args.compare_training:
        compare_training(args.out, Path(args.compare_training[0]), args.compare_training[1])
        return
    if args.table2 and len(args.table2) > 2:
        parser.error("--table2 takes one candidate as MN and at most one more as 'MN alone'")
    if args.report or args.table2:
        report(args.out, args.more_seeds) if args.report else table2(args.out, *args.table2[:1], args.more_seeds,
                                                                     *args.table2[1:2])
        return
    mlps = {"vanilla": {"dictionary_size": 0}, **{candidate: CANDIDATES[candidate] for candidate in args.candidates}}
    for name, settings in mlps.items():  # what its first fit would refuse (a bad --refine, leave-one-out refined)
        try:
            check_settings(MetaNeighborhoodsRegressor(**settings, refine_factor=args.refine))
        except ConfigError as error:
            parser.error(f"{name}: {error}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.tables:
        run_table(name, args.out, args.candidates, args)


if __name__ == "__main__":
    main()
