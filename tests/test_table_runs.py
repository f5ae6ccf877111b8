"""Table 2 / ablation experiments: statistics bookkeeping, files written, and the two commands, on tiny data."""

import dataclasses
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits
import torch

import meta_neighborhoods
from meta_neighborhoods import io
from meta_neighborhoods.io import RunFolderError
from meta_neighborhoods.cli import build_parser, main
from meta_neighborhoods.datasets.csv_tables import load_csv_table
from meta_neighborhoods.datasets.tables import GOM_FILE, Table, available_tables
from meta_neighborhoods.estimators import MetaNeighborhoodsRegressor
from meta_neighborhoods.validation import ConfigError
from meta_neighborhoods.significance import corrected_t_test, paired_t_test, resolvable_difference, shown_p
from meta_neighborhoods.experiments import ablation_caps, cross_validation, reports, table_runs
from meta_neighborhoods.experiments.cross_validation import TABLE_METHODS, available_methods, cross_validate
from meta_neighborhoods.experiments.table_runs import (
    ABLATION_TYPES, ablation_values, run_ablation, run_table, run_tables,
)

FAST = {"max_epochs": 5, "hidden_layer_sizes": (16,), "dictionary_size": 16}


@pytest.fixture(autouse=True)
def one_thread():
    """One OpenMP thread: on a small shared machine, thread barriers of gradient boosting can stall for seconds."""
    with threadpool_limits(1):
        yield


@pytest.fixture
def tiny_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=120)
    path = tmp_path / "tiny.csv"
    np.savetxt(path, np.c_[X, y], delimiter=",", header="a,b,c,d,y", comments="")
    return path


@pytest.fixture
def fast_estimators(monkeypatch):
    """The commands use the estimator's defaults, which are sized for real data; shrink them for a test."""
    for task, estimator in cross_validation.ESTIMATORS.items():
        monkeypatch.setitem(cross_validation.ESTIMATORS, task, functools.partial(estimator, **FAST))


# ---------------------------------------------------------------------------------------------------
# run_table


def test_run_table_writes_table_2_for_one_data_set(tiny_csv, tmp_path):
    table = load_csv_table(tiny_csv, "y")
    results = run_table(table, tmp_path / "run", folds=2, seed=3, seeds=2, estimator_params=FAST,
                        methods=TABLE_METHODS, progress=False)

    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert (saved["dataset"], saved["n"], saved["d"], saved["metric"]) == ("tiny", 120, 4, "mse")
    assert list(saved["folds"]) == list(TABLE_METHODS)
    assert all(len(errors) == 4 and min(errors) > 0 for errors in saved["folds"].values())  # 2 seeds x 2 folds
    assert (saved["fold_seeds"], saved["fold_numbers"]) == ([3, 3, 4, 4], [0, 1, 0, 1])
    for name, errors in saved["folds"].items():
        assert saved["mean"][name] == pytest.approx(np.mean(errors))
        assert saved["std"][name] == pytest.approx(np.std(errors))
        assert saved["ratio"][name] == pytest.approx(np.mean(errors) / np.mean(saved["folds"]["vanilla"]))
    ours = np.array(saved["folds"]["meta_neighborhoods"])
    for name in ("knn", "vanilla", "hist_gradient_boosting"):
        theirs = np.array(saved["folds"][name])
        assert saved["reference_wins"][name] == int(np.sum(ours < theirs))
        assert saved["p_values"][name] == corrected_t_test(ours, theirs, folds=2)
        assert saved["resolvable"][name] == resolvable_difference(ours, theirs, folds=2)
        assert saved["p_values_first_seed"][name] == paired_t_test(ours[:2], theirs[:2])
    assert saved["p_value_vs_vanilla"] == saved["p_values"]["vanilla"]
    assert set(saved["seconds"]) == set(TABLE_METHODS) and "architectures" not in saved
    assert saved["kept"]["vanilla"] == ["vanilla"] * 4 and set(saved["kept"]) == {"vanilla", "meta_neighborhoods"}
    assert set(saved["kept"]["meta_neighborhoods"]) <= {"vanilla", "meta_neighborhoods"}
    assert set(saved["validation_losses"]) == set(saved["kept"])  # what each fold's choice was made by, in order
    assert all(list(losses) == ["vanilla"] for losses in saved["validation_losses"]["vanilla"])
    for choice, losses in zip(saved["kept"]["meta_neighborhoods"], saved["validation_losses"]["meta_neighborhoods"]):
        assert set(losses) == {"vanilla", "meta_neighborhoods"} and choice == min(losses, key=losses.get)
    config = saved["config"]
    assert (config["folds"], config["seed"], config["seeds"], config["search"]) == (2, 3, 2, False)
    assert (config["rows_used"], config["rows_in_table"], config["max_rows"]) == (120, 120, None)
    assert (config["table"], config["table_sha256"]) == (table.description, table.sha256())
    assert config["provenance"]["meta_neighborhoods"] == meta_neighborhoods.__version__  # and the command, versions
    assert config["version"] == meta_neighborhoods.__version__
    assert config["estimator"]["dictionary_size"] == 16 and config["estimator"]["random_state"] == 3
    assert config["estimator"]["hidden_layer_sizes"] == [16]
    assert ("Parameters other than the estimator's defaults: `dictionary_size=16`, `hidden_layer_sizes=[16]`, "
            "`max_epochs=5`. Command: `") in (tmp_path / "run" / "results.md").read_text()

    # The same folds and the training fold's standardisation, checked on the deterministic method.
    expected = []
    for seed in (3, 4):  # each repeat shuffles the folds and seeds the models with its own seed
        for train, test in KFold(2, shuffle=True, random_state=seed).split(table.X):
            mean, std = table.y[train].mean(), table.y[train].std()
            model = HistGradientBoostingRegressor(random_state=seed).fit(table.X[train], (table.y[train] - mean) / std)
            expected.append(np.mean((model.predict(table.X[test]) - (table.y[test] - mean) / std) ** 2))
    assert saved["folds"]["hist_gradient_boosting"] == pytest.approx(expected)

    markdown = (tmp_path / "run" / "results.md").read_text()
    assert ("| method | MSE (mean ± std) | ratio to vanilla | MN won/tied/lost | p corrected | resolves | p paired (first seed) |"
            in markdown) and "2-fold CV repeated over 2 seeds (3..4)" in markdown
    assert all(f"| {name} |" in markdown for name in TABLE_METHODS)
    for name in TABLE_METHODS:  # each figure in its header's column
        assert _results_row(saved, name) in markdown.splitlines()
    assert (tmp_path / "run" / "folds.png").stat().st_size > 5_000


def _results_row(results, name):
    """A method's row of results.md, built from results.json cell by cell in the order of the table's header."""
    wins, ties, total = results["reference_wins"], results["reference_ties"], len(results["fold_seeds"])
    cells = [name, reports.error_cell(results["mean"][name], results["std"][name]),
             reports.number(results["ratio"][name]) if name in results["ratio"] else "—",
             f"{wins[name]}/{ties[name]}/{total - wins[name] - ties[name]}" if name in wins else "—",
             shown_p(results["p_values"].get(name)),
             reports.gap_cell(results["resolvable"].get(name), results["mean"][name]),
             shown_p(results["p_values_first_seed"].get(name))]
    return "| " + " | ".join(cells) + " |"


@pytest.mark.parametrize("baseline, package", [("lightgbm", "lightgbm"), ("realmlp_td", "pytabkit")])
def test_an_installed_baseline_joins_the_table_on_the_same_folds(tiny_csv, tmp_path, baseline, package):
    pytest.importorskip(package)
    assert baseline in available_methods()
    methods = {name: available_methods()[name] for name in ("meta_neighborhoods", baseline)}
    results = run_table(load_csv_table(tiny_csv, "y"), tmp_path, folds=2, seeds=1, methods=methods,
                        estimator_params=FAST, progress=False)
    assert len(results["folds"][baseline]) == 2 and 0 < results["mean"][baseline] < 1.5  # learns something
    assert results["p_values"].keys() == {baseline}


def test_search_records_one_architecture_per_fold(tiny_csv, tmp_path):
    table = load_csv_table(tiny_csv, "y")
    methods = {name: TABLE_METHODS[name] for name in ("vanilla", "meta_neighborhoods")}
    results = run_table(table, tmp_path, folds=2, seeds=2, search=True, methods=methods,
                        estimator_params={**FAST, "max_epochs": 1}, progress=False)
    assert [(a["seed"], a["fold"]) for a in results["architectures"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for choice in results["architectures"]:
        depth, width = len(choice["hidden_layer_sizes"]), choice["hidden_layer_sizes"][0]
        assert depth in cross_validation.SEARCH_DEPTHS and width in cross_validation.SEARCH_WIDTHS
        assert choice["hidden_layer_sizes"] == [width] * depth
        assert len(choice["validation_mse"]) == 16
        assert min(choice["validation_mse"].values()) == choice["validation_mse"]["x".join([str(width)] * depth)]
    assert results["config"]["estimator"]["hidden_layer_sizes"].startswith("searched")


class _Confident:
    """A classifier right on every row, surer of it the more units its network has."""

    def __init__(self, layers):
        self.sure = 0.5 + 0.49 * np.prod(layers) ** (1 / len(layers)) * len(layers) / (5 * 256)

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return (X[:, 0] > 0.5).astype(int)

    def predict_proba(self, X):
        right = self.predict(X)
        return np.where(np.arange(2) == right[:, None], self.sure, 1 - self.sure)


def test_the_classifier_s_search_breaks_error_rate_ties_by_log_loss(monkeypatch):
    monkeypatch.setattr(cross_validation, "_vanilla",
                        lambda *, params, task, **_: _Confident(params["hidden_layer_sizes"]))
    y = np.arange(50) % 2
    choice = cross_validation.search_architecture(y[:, None] * 1.0, y, seed=0, params={}, task="classification")
    assert set(choice["validation_error_rate"].values()) == {0.0}  # every architecture ties on the error rate
    assert choice["hidden_layer_sizes"] == [256] * 5  # the surest: the lowest log-loss
    sure = _Confident([256] * 5).sure
    assert choice["validation_log_loss"]["x".join(["256"] * 5)] == pytest.approx(-np.log(sure))


class _KeptBySeed:
    """A mean predictor that reports the vanilla fallback's choice: the network without neighbours under seed 3."""

    def __init__(self, seed):
        self.seed = seed

    def fit(self, X, y):
        self.selected_, self.mean_ = "vanilla" if self.seed == 3 else "meta_neighborhoods", float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def test_the_network_each_fold_kept_is_recorded_and_counted(tiny_csv, tmp_path):
    methods = {"knn": TABLE_METHODS["knn"], "meta_neighborhoods": lambda seed, n_train, params: _KeptBySeed(seed)}
    results = run_table(load_csv_table(tiny_csv, "y"), tmp_path / "run", folds=2, seed=3, seeds=2,
                        methods=methods, progress=False)
    assert results["kept"] == {"meta_neighborhoods": ["vanilla", "vanilla", "meta_neighborhoods",
                                                      "meta_neighborhoods"]}  # the folds' order; knn reports none
    assert "kept the network with neighbours on 2 of 4 folds" in (tmp_path / "run" / "results.md").read_text()
    summary = run_tables(["gom"], tmp_path / "all", methods=methods, folds=2, seeds=1, progress=False)
    assert summary["datasets"]["gom"]["neighbours_kept"] == 2  # seed 0: the neighbours kept on both folds
    assert "| 2/2 |" in (tmp_path / "all" / "summary.md").read_text()


class _Warns:
    """A mean predictor whose fit warns as a capped fit does (``ConvergenceWarning``) under seed 0, and with an
    unrelated warning under seed 1."""

    def __init__(self, seed):
        self.seed = seed

    def fit(self, X, y):
        if self.seed == 0:
            warnings.warn("stopped at max_epochs", ConvergenceWarning)
        else:
            warnings.warn("something else", UserWarning)
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def test_fits_stopped_at_max_epochs_are_counted_and_reported_once(tiny_csv, tmp_path, caplog):
    """A run capped by --max-epochs says so once, in its log and its report, with the count per method, instead
    of a warning per fit; other warnings still reach the caller, each once a run (a warning about the table, such
    as a column taken as constant, came once for every fit of every fold)."""
    methods = {"knn": TABLE_METHODS["knn"], "meta_neighborhoods": lambda seed, n_train, params: _Warns(seed)}
    table = load_csv_table(tiny_csv, "y")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = run_table(table, tmp_path / "run", folds=2, seeds=2, methods=methods, progress=False)
    assert [(w.category, str(w.message)) for w in caught] == [(UserWarning, "something else")]  # seed 1's folds, once
    assert results["unconverged"] == {"meta_neighborhoods": 2}
    assert json.loads((tmp_path / "run" / "results.json").read_text())["unconverged"] == {"meta_neighborhoods": 2}
    note = "Stopped at max_epochs before early stopping ended them (meta_neighborhoods: 2 of 4 folds)"
    assert note in (tmp_path / "run" / "results.md").read_text()
    assert [r.getMessage() for r in caplog.records if "max_epochs" in r.getMessage()] == [
        f"tiny: {note}: raise --max-epochs, or lower --n-iter-no-change, to let early stopping decide."]

    caplog.clear()
    results = run_table(table, tmp_path / "knn", folds=2, seeds=1, methods={**methods, "meta_neighborhoods":
                        lambda seed, n_train, params: _KeptBySeed(seed)}, progress=False)
    assert results["unconverged"] == {} and "Stopped" not in (tmp_path / "knn" / "results.md").read_text()
    assert not caplog.records


def test_the_search_s_capped_fits_are_counted_apart(tiny_csv, tmp_path):
    methods = {name: TABLE_METHODS[name] for name in ("vanilla", "meta_neighborhoods")}
    results = run_table(load_csv_table(tiny_csv, "y"), tmp_path, folds=2, seeds=1, search=True, methods=methods,
                        estimator_params={**FAST, "max_epochs": 1}, progress=False)
    search = len(cross_validation.SEARCH_DEPTHS) * len(cross_validation.SEARCH_WIDTHS) * 2
    assert results["unconverged"] == {"architecture search": search, "vanilla": 2, "meta_neighborhoods": 2}
    assert f"architecture search: {search} fits; vanilla: 2 of 2 folds" in (tmp_path / "results.md").read_text()


def test_run_table_needs_the_reference_method(tiny_csv, tmp_path):
    with pytest.raises(ValueError, match="meta_neighborhoods"):
        run_table(load_csv_table(tiny_csv, "y"), tmp_path, methods={"knn": TABLE_METHODS["knn"]}, progress=False)


def test_run_tables_skips_missing_files_and_summarises(tmp_path, caplog):
    data = tmp_path / "data" / "gom"
    data.mkdir(parents=True)
    shutil.copyfile(Path(meta_neighborhoods.__file__).parent / "data" / f"gom_{GOM_FILE}", data / GOM_FILE)
    methods = {name: TABLE_METHODS[name] for name in ("knn", "vanilla", "meta_neighborhoods")}
    summary = run_tables(["gom", "boston"], tmp_path / "out", data_dir=tmp_path / "data", methods=methods,
                         folds=2, seeds=1, estimator_params={**FAST, "max_epochs": 2}, progress=False)

    assert "skipping boston: boston: missing data file" in caplog.text  # a warning of the package's logger
    assert list(summary["datasets"]) == ["gom"] and list(summary["skipped"]) == ["boston"]
    row = summary["datasets"]["gom"]
    assert (row["n"], row["d"]) == (1059, 116)
    assert row["lowest"] == min(row["mean"], key=row["mean"].get)
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == json.loads(json.dumps(summary))
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert ("| data set | n | d | knn | vanilla | meta_neighborhoods | MN / vanilla | MN won/tied/lost vs vanilla | "
            "p MN vs knn | p MN vs vanilla | lowest mean | neighbours kept |") in markdown
    assert "| gom | 1059 | 116 |" in markdown and "Skipped (data files missing): boston" in markdown
    assert "Parameters other than the estimator's defaults: `dictionary_size=16`, `hidden_layer_sizes=[16]`" in markdown
    assert "`max_epochs=2`" in markdown and "`device=" not in markdown  # the command line's device: no parameter
    stopped = sum(row["unconverged"].values())  # at 2 epochs: a trial's summary had not said so
    assert stopped and f"Stopped at max_epochs before early stopping ended them: gom ({stopped} fits)" in markdown
    saved, total = json.loads((tmp_path / "out" / "summary.json").read_text())["datasets"]["gom"], row["folds_total"]
    cells = ["gom", "1059", "116", *(reports.error_cell(saved["mean"][m], saved["std"][m]) for m in methods),
             reports.number(saved["ratio"]["meta_neighborhoods"]),
             f"{saved['reference_wins']['vanilla']}/{saved['reference_ties']['vanilla']}/"
             f"{total - saved['reference_wins']['vanilla'] - saved['reference_ties']['vanilla']}",
             shown_p(saved["p_value_vs_knn"]), shown_p(saved["p_value_vs_vanilla"]),
             saved["lowest"], f"{saved['neighbours_kept']}/{total}"]
    assert "| " + " | ".join(cells) + " |" in markdown.splitlines()  # each figure in its header's column
    assert (tmp_path / "out" / "gom" / "results.json").is_file()

    # an earlier run's boston results (its data there then), replaced by a run that skips it: none of them stays
    # beside the new summary, which says boston was skipped
    shutil.copytree(tmp_path / "out" / "gom", tmp_path / "out" / "boston", ignore=shutil.ignore_patterns(".lock"))
    (tmp_path / "out" / "boston" / "mine.txt").write_text("a user's own file")
    run_tables(["gom", "boston"], tmp_path / "out", data_dir=tmp_path / "data", methods=methods, folds=2,
               seeds=1, estimator_params={**FAST, "max_epochs": 1}, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out" / "boston").iterdir()) == [".lock", "mine.txt"]  # locked, emptied



def _two_tables(tmp_path, names=("gom", "gom-longitude")):
    """A small run of gom and gom-longitude (the shipped file, copied to a data folder), given its --out."""
    data = tmp_path / "data" / "gom"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(meta_neighborhoods.__file__).parent / "data" / f"gom_{GOM_FILE}", data / GOM_FILE)
    return functools.partial(run_tables, list(names), data_dir=tmp_path / "data",
                             methods={name: TABLE_METHODS[name] for name in ("vanilla", "meta_neighborhoods")},
                             folds=2, seeds=1, max_rows=60, estimator_params={**FAST, "max_epochs": 1},
                             progress=False)


@pytest.mark.parametrize("where, error", [
    ("cross_validate", KeyboardInterrupt), ("fold_errors_figure", KeyboardInterrupt),
    ("fold_errors_figure", OSError(27, "File too large")),
], ids=["stopped at the second table", "stopped while writing", "failed while writing"])
def test_a_run_of_several_tables_replacing_an_earlier_one_leaves_it_whole_when_it_fails(tmp_path, snapshot,
                                                                                       monkeypatch, where, error):
    """Each table's files went as soon as that table had its results, and later, once all had them, table after
    table (a figure each, seconds): a run stopped or failing at the second table left the first table's new files
    beside the second's earlier ones and the earlier summary. They are written aside and take their places together.
    Into a new folder they still go at once, so that a failed run keeps the tables it finished."""
    run, out = _two_tables(tmp_path), tmp_path / "out"
    run(out)
    earlier, calls, real = snapshot(out), [], getattr(table_runs, where)

    def second_fails(*args, **kwargs):
        calls.append(where)
        if len(calls) == 2:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(table_runs, where, second_fails)
    with pytest.raises(error if isinstance(error, type) else type(error)):
        run(out, seed=1, overwrite=True)
    assert snapshot(out) == earlier
    calls.clear()
    with pytest.raises(error if isinstance(error, type) else type(error)):
        run(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "gom" / "results.json").read_text())["fold_seeds"] == [0, 0]
    assert not (tmp_path / "new" / "summary.json").exists()
    monkeypatch.undo()
    (out / "gom" / ".staged.of_a_killed_run").mkdir()  # a table's stage, where the folder's own run does not look
    run(out, seed=1, overwrite=True)
    assert all(json.loads((out / name / "results.json").read_text())["fold_seeds"] == [1, 1]
               for name in ("gom", "gom-longitude"))
    assert not any(path.name.startswith(".staged.") for path in out.rglob("*"))


def test_a_run_replacing_an_earlier_one_locks_even_the_table_folders_it_has_not_written_yet(tiny_csv, tmp_path,
                                                                                             monkeypatch):
    """Only the table folders that existed were locked: a one-table run into a new one finished meanwhile and was
    replaced at the end without a word. A folder made for its lock goes again where nothing else was written."""
    out = tmp_path / "out"
    _two_tables(tmp_path, ["gom"])(out)
    real, refused = table_runs._table_results, []

    def meanwhile(table, *args, **kwargs):
        with pytest.raises(RunFolderError, match="gom-longitude is being written by process") as error:
            run_table(load_csv_table(tiny_csv, "y"), out / "gom-longitude", folds=2, seeds=1,
                      estimator_params=FAST, methods=TABLE_METHODS, progress=False)
        refused.append(error)
        return real(table, *args, **kwargs)

    monkeypatch.setattr(table_runs, "_table_results", meanwhile)
    _two_tables(tmp_path, ["gom", "gom-longitude", "boston"])(out, overwrite=True)  # boston: no data, skipped
    assert len(refused) == 2 and not (out / "boston").exists()
    assert json.loads((out / "gom-longitude" / "results.json").read_text())["dataset"] == "gom-longitude"


def test_a_table_folder_another_run_wrote_meanwhile_is_refused_not_replaced(tmp_path, monkeypatch):
    """A run into a new folder claimed a table's folder only to write it, and with --overwrite: a one-table run
    that wrote out/gom-longitude meanwhile was replaced without a word."""
    run, out = _two_tables(tmp_path), tmp_path / "out"
    real = table_runs._table_results

    def meanwhile(table, *args, **kwargs):
        if table.name == "gom-longitude":
            (out / "gom-longitude").mkdir()
            (out / "gom-longitude" / "results.json").write_text('{"another": "run"}')
        return real(table, *args, **kwargs)

    monkeypatch.setattr(table_runs, "_table_results", meanwhile)
    with pytest.raises(FileExistsError, match=r"gom-longitude already holds a run \(results.json\)"):
        run(out)
    assert (out / "gom-longitude" / "results.json").read_text() == '{"another": "run"}'


# ---------------------------------------------------------------------------------------------------
# run_ablation


def test_ablation_values_take_the_estimators_types():
    assert ablation_values("dictionary_size", ["0", "64"]) == [0, 64]
    assert ablation_values("temperature", ["0.5", "none", 2]) == [0.5, None, 2.0]
    assert ablation_values("top_k", ["None", "32"]) == [None, 32]
    assert ablation_values("similarity", ["cosine", "euclidean"]) == ["cosine", "euclidean"]
    with pytest.raises(ValueError, match="must be of type int"):
        ablation_values("inner_steps", ["1.5"])
    with pytest.raises(ValueError, match="repeat"):
        ablation_values("dictionary_size", ["8", "8"])
    with pytest.raises(ValueError, match="101 values of top_k: an ablation tries at most 100"):  # a record's list
        ablation_values("top_k", range(1, 102))


def test_unknown_ablation_parameter_names_the_allowed_ones(tiny_csv, tmp_path, capsys):
    with pytest.raises(ValueError, match="dictionary_size, temperature, top_k, inner_steps, step_size, similarity"):
        run_ablation(load_csv_table(tiny_csv, "y"), tmp_path, "learning_rate", ["0.1"], progress=False)
    for given in (["--param", "width"], ["--param", "hidden_layer_sizes", "--hidden-layer-sizes", "16"]):
        with pytest.raises(SystemExit) as exited:  # argparse's own refusal
            main(["ablate", "--data-file", str(tiny_csv), "--target", "y", *given, "--values", "3",
                  "--out", str(tmp_path / "a"), "--quiet"])
        assert exited.value.code == 2
        error = capsys.readouterr().err.strip()  # one message, not first "drop --hidden-layer-sizes"
        assert error.count("\n") == 0 and f"invalid choice: '{given[1]}'" in error and "slot_dropout" in error


def test_an_ablated_temperature_that_resolves_as_another_is_refused_before_any_work(tiny_csv, tmp_path, capsys):
    out = tmp_path / "ablation"
    assert main(["ablate", "--data-file", str(tiny_csv), "--target", "y", "--param", "temperature", "--values", "none",
                 "4", "--out", str(out), "--quiet"]) == 2
    assert ("none (the default) and 4 are the same here: the default temperature of euclidean similarity on 4 features "
            "is 4; drop one") in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match=r"0.1 and none \(the default\) are the same.* cosine similarity"):
        run_ablation(load_csv_table(tiny_csv, "y"), out, "temperature", ["0.5", "0.1", "none"], progress=False,
                     estimator_params={"similarity": "cosine"})
    assert not out.exists()
    assert main(["ablate", "--data-file", str(tiny_csv), "--target", "y", "--param", "temperature", "--values",
                 "none", "5", "--out", str(out), "--folds", "2", "--seeds", "1", "--max-epochs", "1",
                 "--quiet"]) == 0  # 5 is not the default here
    factory = cross_validation.meta_neighborhoods_estimator
    methods = {value: cross_validation.with_params(factory, temperature=value) for value in (None, 4.0)}
    extractor = functools.partial(torch.nn.Linear, out_features=16)  # its width, not the table's, sets the default
    table_runs._check_distinct("temperature", [None, 4.0], methods, {"extractor": extractor},
                               load_csv_table(tiny_csv, "y"))


# ---------------------------------------------------------------------------------------------------
# Commands


def test_regress_command_on_a_csv_file(tiny_csv, tmp_path, capsys, fast_estimators):
    out = tmp_path / "run"
    assert main(["regress", "--data-file", str(tiny_csv), "--target", "y", "--out", str(out), "--folds", "2",
                 "--seeds", "1", "--max-epochs", "3", "--max-rows", "100", "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "results.md").read_text() and "| meta_neighborhoods |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "tiny" and results["config"]["estimator_params"] == {"device": "cpu", "max_epochs": 3}
    assert (results["n"], results["config"]["rows_in_table"], len(results["folds"]["vanilla"])) == (100, 120, 2)
    assert (out / "folds.png").is_file()


@pytest.mark.parametrize("param, value, message", [
    ("dictionary_size", "-1", "dictionary_size must be a non-negative integer"),
    ("temperature", "0", "temperature"), ("top_k", "0", "top_k"), ("inner_steps", "0", "inner_steps"),
    ("slot_dropout", "1.5", "slot_dropout"), ("similarity", "manhattan", "similarity"),
])
def test_a_value_the_estimator_refuses_leaves_no_output_folder(tiny_csv, tmp_path, capsys, param, value, message):
    """Every value is checked as fit checks it before --out is claimed: a refused ablation leaves nothing."""
    out = tmp_path / "ablation"
    assert main(["ablate", "--data-file", str(tiny_csv), "--target", "y", "--param", param, "--values", value,
                 "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("params, message", [
    ({"batch_size": 0}, "batch_size must be a positive integer"), ({"top_k": 0}, "top_k must be a positive integer"),
    ({"similarity": "manhattan"}, "unknown similarity"), ({"dictionary_size": 0}, "dictionary_size=0 is the vanilla"),
    ({"leave_one_out": True, "key_init": "gaussian"}, "it needs key_init='samples'"),
])
def test_a_setting_the_estimator_refuses_leaves_no_folder_from_python(tiny_csv, tmp_path, params, message):
    """From Python as from the command line: refused before the folder is claimed (it used to leave one with .lock;
    the folders exist beforehand, since a run refused after claiming a folder it created removes it)."""
    table = load_csv_table(tiny_csv, "y")
    (tmp_path / "one").mkdir(), (tmp_path / "all").mkdir()
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_table(table, tmp_path / "one", estimator_params=params, progress=False)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_tables(["gom"], tmp_path / "all", estimator_params=params, progress=False)
    assert not list((tmp_path / "one").iterdir()) and not list((tmp_path / "all").iterdir())


def test_a_seed_the_estimator_refuses_leaves_no_folder(tiny_csv, tmp_path):
    """A table run's estimator_params may give random_state (it wins over the fold's seed): checked before the
    folder is claimed, as every other setting."""
    (tmp_path / "one").mkdir()  # a folder of the user's: a run refused after claiming it would leave its lock
    with pytest.raises(ValueError, match="cannot be used to seed"):
        run_table(load_csv_table(tiny_csv, "y"), tmp_path / "one", estimator_params={"random_state": "x"},
                  progress=False)
    assert not list((tmp_path / "one").iterdir())


def test_numpy_counts_are_recorded_as_numbers_and_the_thread_count_is_the_one_run_on(tmp_path):
    before = torch.get_num_threads()
    summary = run_tables(["gom"], tmp_path / "all", folds=np.int64(2), seeds=np.int64(1), seed=np.int64(0),
                         max_rows=np.int64(60), threads=np.int64(2), progress=False, methods=TABLE_METHODS,
                         estimator_params={**FAST, "max_epochs": 1})
    config = json.loads((tmp_path / "all" / "summary.json").read_text())["config"]
    assert before == 1  # this file's one thread: a count of 1 asked for would show nothing
    assert config["threads"] == config["provenance"]["threads"] == 2 == summary["config"]["threads"]
    table = json.loads((tmp_path / "all" / "gom" / "results.json").read_text())["config"]
    assert (table["threads"], table["provenance"]["threads"], table["folds"], table["max_rows"]) == (2, 2, 2, 60)
    assert torch.get_num_threads() == before


class _Mean:
    """A method that predicts the training mean, and notes the thread count it was fitted on."""

    threads: list = []

    def fit(self, X, y):
        self.threads.append(torch.get_num_threads())
        self.mean = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean)


def _small_table(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return Table(name="t", X=X, y=X[:, 0] + 0.1 * rng.normal(size=n), feature_names=None, description="t")


def test_a_table_run_fits_on_the_threads_it_was_given(tmp_path):
    _Mean.threads = []
    results = run_table(_small_table(30), tmp_path / "r", folds=2, seeds=1, threads=2, progress=False,
                        methods={"meta_neighborhoods": lambda seed, n_train, params: _Mean()})
    assert _Mean.threads == [2, 2] and torch.get_num_threads() == 1
    assert results["config"]["threads"] == results["config"]["provenance"]["threads"] == 2


def test_max_rows_draws_distinct_rows_so_no_row_sits_in_a_training_and_a_test_fold():
    table = _small_table(200)
    for seed in range(5):
        used = cross_validation.subset_rows(table, 150, seed)
        assert len(used.y) == 150 and len(np.unique(used.X, axis=0)) == 150


def test_every_method_fits_the_architecture_the_search_chose(monkeypatch):
    chosen = {"hidden_layer_sizes": [7, 7], "validation_mse": {"7x7": 0.5}, "seconds": 0.0}
    monkeypatch.setattr(cross_validation, "search_architecture", lambda X, y, *, seed, params, task: dict(chosen))
    seen = []

    def spy(*, seed, n_train, params):
        seen.append(params.get("hidden_layer_sizes"))
        return _Mean()

    cross_validate(_small_table(), {"vanilla": spy, "meta_neighborhoods": spy}, folds=2, seed=0,
                   params={"hidden_layer_sizes": (3,)}, search=True, progress=False)
    assert seen == [(7, 7)] * 4  # vanilla and MN, both folds: the README says MN takes the searched network too


def test_no_method_s_seconds_carry_the_one_time_import_of_the_first_optimiser():
    code = """
import sys
from meta_neighborhoods.experiments.cross_validation import cross_validate
from meta_neighborhoods.datasets.tables import Table
import numpy as np
seen = []
class Mean:
    def fit(self, X, y):
        seen.append("torch._dynamo" in sys.modules)  # imported by AdamW's first construction, about 1.5 s
        self.mean = y.mean()
        return self
    def predict(self, X):
        return np.full(len(X), self.mean)
X = np.arange(20.0)[:, None]
cross_validate(Table("t", X, X[:, 0], None, ""), {"first": lambda **_: Mean()}, folds=2, seed=0, params={},
               progress=False)
print(seen)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(meta_neighborhoods.__file__).parents[1])})
    assert done.stdout.strip() == "[True, True]"


def _table_results(mean, p_values):
    return {"n": 10, "d": 2, "mean": mean, "std": dict.fromkeys(mean, 0.1), "ratio": {}, "reference_wins": {},
            "reference_ties": {}, "fold_seeds": [0, 0], "p_values": p_values, "unconverged": {}}


@pytest.mark.parametrize("knn, boosting, lowest", [(3.0, 4.0, "meta_neighborhoods"), (0.5, 4.0, "knn"),
                                                    (3.0, 0.3, "hist_gradient_boosting")])  # not only vanilla and kNN
def test_the_summary_row_gives_each_p_value_and_the_method_of_lowest_error(knn, boosting, lowest):
    row = table_runs._summary_row(_table_results(
        {"meta_neighborhoods": 1.0, "vanilla": 2.0, "knn": knn, "hist_gradient_boosting": boosting},
        {"vanilla": 0.01, "knn": 0.5, "hist_gradient_boosting": 0.001}))
    assert (row["p_value_vs_vanilla"], row["p_value_vs_knn"], row["lowest"]) == (0.01, 0.5, lowest)


def test_the_reports_name_every_estimator_parameter_given_other_than_its_default_and_no_run_setting():
    """A head is an estimator parameter as any other (it had been left out), the seed, device and verbosity the
    run's own."""
    given = {"head": "periodic", "device": "cpu", "random_state": 4, "verbose": 1}
    recorded = json.loads(json.dumps(MetaNeighborhoodsRegressor(**given).get_params()))
    expected = "Parameters other than the estimator's defaults: `head='periodic'`."
    assert reports.settings_note({"estimator_params": given}) == expected  # a summary's: what was given
    assert reports.settings_note({"estimator": recorded, "provenance": {"command": ["r"]}}) == expected + \
        " Command: `r`."
    unvaried = reports.settings_note({"estimator": recorded}, varied="head")
    assert unvaried == "Every other parameter at the estimator's default."

def test_the_summary_gives_mn_s_p_value_against_every_method_it_compares():
    """Gradient boosting (and any baseline installed) in the summary's columns has its p column, as vanilla and kNN."""
    methods = ["knn", "vanilla", "meta_neighborhoods", "hist_gradient_boosting"]
    row = {**table_runs._summary_row(_table_results(dict(zip(methods, (3.0, 2.0, 1.0, 0.5))),
                                                    {"knn": 0.5, "vanilla": 0.01, "hist_gradient_boosting": 0.0123})),
           "neighbours_kept": None}
    lines = reports.summary_markdown({"t": row}, methods, {}, "2-fold CV", {}).splitlines()
    header, cells = (line.strip("| ").split(" | ") for line in (lines[4], lines[6]))
    assert [name for name in header if name.startswith("p ")] == ["p MN vs knn", "p MN vs vanilla",
                                                                  "p MN vs hist_gradient_boosting"]
    assert cells[header.index("p MN vs hist_gradient_boosting")] == "0.0123"


def test_report_cells_keep_four_digits_and_give_the_resolvable_gap_in_percent_of_the_mse():
    assert (reports.number(0.5), reports.number(12), reports.number(1234.0)) == ("0.5000", "12.00", "1234")
    assert reports.error_cell(0.5, 0.05) == "0.5000 ± 0.05000"  # a column of errors lines up
    assert reports.gap_cell(0.05, 0.5) == "±10.0 %" and reports.gap_cell(0.002, 0.4) == "±0.5 %"
    assert reports.gap_cell(None, 0.5) == "—" == reports.gap_cell(0.05, 0.0) == shown_p(None)
    assert shown_p(0.012345) == "0.0123" and shown_p(0.0) == shown_p(9e-5) == "< 0.0001" and shown_p(1e-4) == "0.0001"


def test_a_seed_out_of_range_is_refused_before_the_folder(tiny_csv, user_folder):
    with pytest.raises(ValueError, match="Seed must be between"):
        run_table(load_csv_table(tiny_csv, "y"), out := user_folder("seed"),
                  estimator_params={"random_state": -1}, progress=False)
    assert not any(out.iterdir())


def test_a_head_factory_and_numpy_settings_are_recorded_not_a_failure_after_every_fit(tiny_csv, tmp_path):
    """results.json could not record a head factory or a numpy bool, and the run failed writing it, its fits done."""
    from meta_neighborhoods.heads import MLPHead

    def narrow(n_in, n_out):
        return MLPHead(n_in, (8,), n_out)

    params = {**FAST, "max_epochs": 1, "head": narrow, "vanilla_fallback": np.bool_(False), "batch_size": np.int64(32),
              "device": torch.device("cpu"), "learning_rate": np.float64(0.01)}
    results = run_table(load_csv_table(tiny_csv, "y"), tmp_path / "run", folds=2, seeds=1, progress=False,
                        methods=TABLE_METHODS, estimator_params=params)
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    assert recorded["estimator_params"]["head"].endswith("narrow")
    assert recorded["estimator"]["head"].startswith("factory ")
    assert [recorded["estimator_params"][name] for name in ("vanilla_fallback", "batch_size", "device",
                                                             "learning_rate")] == [False, 32, "cpu", 0.01]
    assert results["kept"]["meta_neighborhoods"] == ["meta_neighborhoods"] * 2  # no fallback: as asked


def test_a_factory_may_derive_settings_from_its_rows_in_a_run_of_several_tables(tmp_path):
    """The run of several tables checks the settings before reading a table, as the estimators take them, not
    through the methods' factories at a nominal size (a factory deriving top_k from its rows was refused)."""
    def scaled_k(*, seed, n_train, params):
        return MetaNeighborhoodsRegressor(**{"random_state": seed, **params, "top_k": n_train // 100})

    results = run_tables(["gom"], tmp_path / "all", folds=2, seeds=1, max_rows=300, progress=False,
                         methods={"meta_neighborhoods": scaled_k},
                         estimator_params={**FAST, "max_epochs": 1})
    assert list(results["datasets"]) == ["gom"]


def test_ablate_command_on_a_csv_file(tiny_csv, tmp_path, capsys, fast_estimators):
    out = tmp_path / "ablation"
    assert main(["ablate", "--data-file", str(tiny_csv), "--target", "y", "--param", "dictionary_size",
                 "--values", "0", "8", "5000", "--out", str(out), "--folds", "2", "--seeds", "2", "--quiet",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "ablation.md").read_text() and "| dictionary_size | MSE (mean ± std) |" in printed
    assert "without the vanilla fallback" in printed
    saved = json.loads((out / "ablation.json").read_text())
    assert (saved["param"], saved["values"]) == ("dictionary_size", [0, 8, 5000])
    assert np.array(saved["folds"]).shape == (3, 4) and len(saved["mean"]) == len(saved["std"]) == 3
    assert saved["dictionary_sizes"][:2] == [[0] * 4, [8] * 4] and max(saved["dictionary_sizes"][2]) < 5000
    assert f"5000 ran with {min(saved['dictionary_sizes'][2])}" in printed  # the cap is said, not left to guess
    assert saved["mean"][0] == pytest.approx(np.mean(saved["folds"][0])) and saved["ratio"][0] == 1.0
    first, *others = saved["folds"]
    assert saved["p_value_vs_first"] == [None, *(corrected_t_test(f, first, folds=2) for f in others)]
    assert saved["config"]["folds"] == 2 and saved["config"]["estimator"]["dictionary_size"].startswith("ablated")
    assert (out / "ablation.png").stat().st_size > 5_000


@pytest.mark.parametrize("param, values, sizes, notes", [
    ("dictionary_size", [0, 8, 5000], [[0, 0], [8, 8], [40, 41]],
     ["", "p = 0.031", "p = 0.5\n40–41 keys"]),
    ("dictionary_size", [8, 41, 5000], [[8, 8], [40, 41], [40, 41]],  # 41 is capped in the 40-row fold only
     ["", "p = 0.031\n40 keys\nin 1/2 folds", "p = 0.5\n40–41 keys"]),
    ("top_k", [None, 4, 1000], [[40, 40]] * 3, ["", "p = 0.031", "p = 0.5\nfull: 40 keys"]),
    ("top_k", [None, 40, 1000], [[40, 41]] * 3,  # 40 of 41 keys is no full attention
     ["", "p = 0.031\nfull: 40 keys\nin 1/2 folds", "p = 0.5\nfull: 40–41 keys"]),
    ("top_k", [None, 4, 1000], [[0, 0]] * 3, ["", "p = 0.031", "p = 0.5"]),  # no dictionary: no attention at all
    ("temperature", [1.0, 0.1, 10.0], [[40, 40]] * 3, ["", "p = 0.031", "p = 0.5"]),
])
def test_the_ablation_figure_marks_values_the_dictionary_capped(param, values, sizes, notes):
    """A capped value's point is said on the figure too, not only in its report: its equal height is no finding."""
    capped = ablation_caps.capped_values(param, values, sizes)
    assert ablation_caps.point_notes(param, [None, 0.0312, 0.5], capped) == notes
    assert ablation_caps.point_notes(param, [None, 0.0, 0.5], capped)[1].startswith("p < 0.0001")  # not "p = 0"


def test_an_ablation_of_none_says_what_none_means(tiny_csv, tmp_path, capsys, fast_estimators):
    out = tmp_path / "ablation"
    assert main(["ablate", "--data-file", str(tiny_csv), "--target", "y", "--param", "top_k", "--values", "none",
                 "4", "1000", "--out", str(out), "--folds", "2", "--seeds", "1", "--quiet", "--device", "cpu"]) == 0
    report = (out / "ablation.md").read_text()
    assert "| full |" in report and "ratio to full" in report and "None" not in report
    assert json.loads((out / "ablation.json").read_text())["values"] == [None, 4, 1000]  # the record keeps the value
    assert "A top-k of at least the dictionary's keys is full attention: 1000 (of " in report and "4 (of" not in report
    assert "`vanilla_fallback=False`" in report and "`top_k=" not in report  # the ablated parameter, set apart


@pytest.mark.parametrize("command, existing", [
    (["regress", "--data-file", "{csv}", "--target", "y"], "results.json"),
    (["regress", "--dataset", "all"], "gom/results.json"),  # any table's results, before the first table runs
    (["ablate", "--data-file", "{csv}", "--target", "y", "--param", "top_k", "--values", "4"], "ablation.json"),
])
def test_a_folder_holding_a_run_is_refused_before_any_work_unless_overwrite(tiny_csv, tmp_path, capsys, monkeypatch,
                                                                           command, existing):
    out = tmp_path / "run"
    (out / existing).parent.mkdir(parents=True)
    (out / existing).write_text('{"hours": "of work"}')

    def work(*args, **kwargs):
        raise RuntimeError("the work began")

    monkeypatch.setattr(table_runs, "cross_validate", work)
    argv = [part.format(csv=tiny_csv) for part in command] + ["--out", str(out), "--quiet", "--folds", "2"]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert f"{out} already holds a run ({existing}): replace it with --overwrite" in error
    assert error.count("\n") == 1 and (out / existing).read_text() == '{"hours": "of work"}'
    assert main([*argv, "--overwrite"]) == 1 and "the work began" in capsys.readouterr().err
    assert (out / existing).read_text() == '{"hours": "of work"}'  # a failed run leaves the earlier one whole


def test_a_folder_where_a_run_writes_a_file_is_refused_before_any_work_even_with_overwrite(tiny_csv, tmp_path,
                                                                                         capsys, monkeypatch):
    """A folder named folds.png was found only at the last write, after results.json had been replaced."""
    out = tmp_path / "run"
    (out / "folds.png").mkdir(parents=True)
    (out / "results.json").write_text('{"hours": "of work"}')
    monkeypatch.setattr(table_runs, "cross_validate", lambda *args, **kwargs: pytest.fail("the work began"))
    argv = ["regress", "--data-file", str(tiny_csv), "--target", "y", "--out", str(out), "--quiet", "--overwrite"]
    assert main(argv) == 1
    assert f"{out / 'folds.png'} exists and is not a regular file" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"hours": "of work"}' and (out / "folds.png").is_dir()


@pytest.mark.parametrize("command, stray", [
    (["regress", "--data-file", "{csv}", "--target", "y"], "results.md"),
    (["regress", "--dataset", "all"], "summary.md"),
    (["regress", "--dataset", "all"], "gom/folds.png"),
    (["ablate", "--data-file", "{csv}", "--target", "y", "--param", "top_k", "--values", "4"], "ablation.png"),
])
def test_a_user_s_file_of_a_run_s_name_is_never_replaced_even_with_overwrite(tiny_csv, tmp_path, capsys, command,
                                                                            stray):
    """A summary.md of the user's own, beside no run's record, was taken for a run's file: --overwrite removed it."""
    out = tmp_path / "run"
    (out / stray).parent.mkdir(parents=True)
    (out / stray).write_text("my notes")
    argv = [part.format(csv=tiny_csv) for part in command] + ["--out", str(out), "--quiet", "--folds", "2"]
    for extra in ([], ["--overwrite"]):
        assert main([*argv, *extra]) == 1
        error = capsys.readouterr().err
        assert f"{out} holds {stray} beside no record of a regress or ablate run" in error and "move them" in error
        assert error.count("\n") == 1 and (out / stray).read_text() == "my notes"
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [Path(stray).name]


def test_the_api_refuses_a_folder_holding_a_run_unless_overwrite(tiny_csv, tmp_path):
    table, out = load_csv_table(tiny_csv, "y"), tmp_path / "run"
    first = run_table(table, out, folds=2, seeds=1, estimator_params=FAST, methods=TABLE_METHODS, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        run_table(table, out, folds=2, seeds=1, seed=1, estimator_params=FAST, methods=TABLE_METHODS,
                  progress=False)
    assert json.loads((out / "results.json").read_text())["fold_seeds"] == first["fold_seeds"] == [0, 0]
    run_table(table, out, folds=2, seeds=1, seed=1, estimator_params=FAST, methods=TABLE_METHODS, progress=False,
              overwrite=True)
    assert json.loads((out / "results.json").read_text())["fold_seeds"] == [1, 1]


@pytest.fixture
def made(monkeypatch):
    """The parameters of every MetaNeighborhoodsRegressor a table run makes (with FAST's training settings)."""
    made = []

    def spy(**params):
        made.append(params)
        return MetaNeighborhoodsRegressor(**{**FAST, **params})

    monkeypatch.setitem(cross_validation.ESTIMATORS, "regression", spy)
    from meta_neighborhoods.commands import common  # its defaults are FAST's: a rerun from a record compares them

    monkeypatch.setattr(common, "ESTIMATOR", dataclasses.replace(common.ESTIMATOR, **FAST))
    return made


def test_regress_keeps_the_estimator_s_fallback_unless_told_and_ablate_never_uses_it(tiny_csv, tmp_path, made):
    """The regress column is the estimator as users get it (vanilla fallback on); --no-vanilla-fallback gives the
    paper's method; an ablation studies the method itself, so its networks with neighbours are always kept."""
    common = ["--data-file", str(tiny_csv), "--target", "y", "--folds", "2", "--seeds", "1", "--quiet"]
    fallback = {}
    for flags in ([], ["--no-vanilla-fallback"]):
        made.clear()
        assert main(["regress", *common, "--out", str(tmp_path / f"r{len(flags)}"), "--max-epochs", "2", *flags]) == 0
        fallback[len(flags)] = {p.get("vanilla_fallback", "default") for p in made if "dictionary_size" not in p}
    assert fallback == {0: {"default"}, 1: {False}}
    made.clear()
    assert main(["ablate", *common, "--out", str(tmp_path / "a"), "--param", "top_k", "--values", "2", "4"]) == 0
    ablated = [p for p in made if "top_k" in p]
    assert len(ablated) == 2 + 4 and all(p["vanilla_fallback"] is False for p in ablated)  # each value checked
    # before the folder is claimed, then fitted on 2 folds
    assert json.loads((tmp_path / "a" / "ablation.json").read_text())["config"]["estimator"]["vanilla_fallback"] is False


def test_patience_and_full_attention_reach_the_estimator_and_its_rerun(tiny_csv, tmp_path, made, user_folder):
    """--n-iter-no-change bounds a large table's fit with early stopping kept; --top-k none asks for every key
    (top_k=None), which a record keeps: as an option's value None would read as not given, the default 128."""
    common = ["--data-file", str(tiny_csv), "--target", "y", "--folds", "2", "--seeds", "1", "--quiet"]
    assert main(["regress", *common, "--out", str(tmp_path / "r"), "--max-epochs", "2", "--n-iter-no-change", "7",
                 "--top-k", "None"]) == 0
    with_neighbours = [p for p in made if p.get("dictionary_size") != 0]
    assert with_neighbours and all(p["n_iter_no_change"] == 7 and p["top_k"] is None for p in with_neighbours)
    made.clear()
    assert main(["regress", "--config", str(tmp_path / "r" / "results.json"), "--data-file", str(tiny_csv), "--out",
                 str(tmp_path / "again"), "--quiet"]) == 0
    assert {(p["n_iter_no_change"], p["top_k"]) for p in made if p.get("dictionary_size") != 0} == {(7, None)}
    notes = [re.search(r"Parameters other than the estimator's defaults: [^.]*\.", (tmp_path / run / "results.md")
                       .read_text()).group() for run in ("r", "again")]
    assert notes[0] == notes[1] and "`n_iter_no_change=7`, `top_k=None`" in notes[0]  # not the record's every value
    assert main(["regress", *common, "--out", str(bad := user_folder("bad")), "--n-iter-no-change", "0"]) == 2
    assert not any(bad.iterdir())


def test_the_second_phase_reaches_both_networks_is_counted_once_a_fit_and_none_turns_it_off(tiny_csv, tmp_path, made):
    """--refine-factor F: refine_factor=F for vanilla and MN alike, recorded; a fit max_epochs cut short in both
    phases counts once (it counted twice: "4 of 2 folds"); --refine-factor none, over a record's F: one phase."""
    common = ["--data-file", str(tiny_csv), "--target", "y", "--folds", "2", "--seeds", "1", "--quiet"]
    assert main(["regress", *common, "--out", str(tmp_path / "r"), "--max-epochs", "2", "--refine-factor", "0.5"]) == 0
    assert made and {p["refine_factor"] for p in made} == {0.5}
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["unconverged"] == {"vanilla": 2, "meta_neighborhoods": 2}
    made.clear()
    assert main(["regress", "--config", str(tmp_path / "r" / "results.json"), "--data-file", str(tiny_csv), "--out",
                 str(tmp_path / "again"), "--refine-factor", "none", "--quiet"]) == 0
    assert made and {p["refine_factor"] for p in made} == {None}


def test_a_csv_s_encoding_is_recorded_and_its_rerun_reads_the_file_so(tiny_csv, tmp_path, made):
    """--encoding reads a latin-1 export; the run records it, so that --config with its record reads the file again
    as it did (else: refused as not UTF-8)."""
    latin = tmp_path / "latin.csv"
    latin.write_bytes(tiny_csv.read_text().replace("a,", "\u00e9,", 1).encode("latin-1"))
    common = ["--data-file", str(latin), "--folds", "2", "--seeds", "1", "--quiet"]
    assert main(["regress", *common, "--target", "y", "--out", str(tmp_path / "r"), "--encoding", "latin-1"]) == 0
    record = json.loads((tmp_path / "r" / "results.json").read_text())["config"]
    assert (record["target"], record["encoding"]) == ("y", "latin-1")
    assert main(["regress", "--config", str(tmp_path / "r" / "results.json"), *common, "--out",
                 str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())["config"]
    assert (again["encoding"], again["table_sha256"]) == ("latin-1", record["table_sha256"])
    assert main(["regress", *common, "--target", "y", "--out", str(tmp_path / "utf8")]) == 1  # not UTF-8: said


def test_a_csv_s_separator_is_an_option_recorded_and_its_rerun_reads_the_file_so(tiny_csv, tmp_path, capsys):
    """A semicolon-separated file is refused as such without --separator, read with it, recorded, and read so again
    by --config with its record (which, given another file, it names); the numbers are the comma-separated file's."""
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text(tiny_csv.read_text().replace(",", ";"))
    common = ["--folds", "2", "--seeds", "1", "--max-epochs", "2", "--quiet"]
    assert main(["regress", "--data-file", str(semicolons), "--target", "y", *common, "--out", str(tmp_path / "no")]) == 1
    assert "the file seems separated by ';', not ','" in capsys.readouterr().err
    assert main(["regress", "--data-file", str(semicolons), "--target", "y", "--separator", "semicolon", *common,
                 "--out", str(tmp_path / "r")]) == 0
    record = json.loads((tmp_path / "r" / "results.json").read_text())
    assert record["config"]["separator"] == "semicolon"
    assert main(["regress", "--config", str(tmp_path / "r" / "results.json"), "--data-file", str(semicolons),
                 "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert json.loads((tmp_path / "again" / "results.json").read_text())["folds"] == record["folds"]
    assert main(["regress", "--config", str(tmp_path / "r" / "results.json"), "--data-file", str(tiny_csv),
                 "--out", str(tmp_path / "other"), "--quiet"]) == 1
    assert "the file seems separated by ',', not ';' (separator 'semicolon' from " in capsys.readouterr().err
    assert main(["regress", "--data-file", str(tiny_csv), "--target", "y", *common, "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "results.json").read_text())["config"]["table_sha256"] == \
        record["config"]["table_sha256"]  # the same numbers
    assert main(["regress", "--dataset", "gom", "--separator", "tab", "--out", str(tmp_path / "gom")]) == 2
    assert "--separator only applies to --data-file" in capsys.readouterr().err


def test_a_decimal_comma_is_an_option_recorded_and_its_rerun_reads_the_file_so(tiny_csv, tmp_path, capsys):
    """A file of semicolons and decimal commas (a spreadsheet's in much of Europe): its numbers are those of the
    file written with points, the option is recorded and --config reads the file so again."""
    frame = pd.read_csv(tiny_csv)
    frame.to_csv(tmp_path / "europe.csv", sep=";", decimal=",", index=False)
    common = ["--folds", "2", "--seeds", "1", "--max-epochs", "2", "--quiet"]
    given = ["--data-file", str(tmp_path / "europe.csv"), "--target", "y", "--separator", "semicolon"]
    assert main(["regress", *given, *common, "--out", str(tmp_path / "no")]) == 1
    assert "give --decimal comma, with a separator other than the comma" in capsys.readouterr().err
    assert main(["regress", *given, "--decimal", "comma", *common, "--out", str(tmp_path / "r")]) == 0
    record = json.loads((tmp_path / "r" / "results.json").read_text())
    assert record["config"]["decimal"] == "comma"
    assert main(["regress", "--data-file", str(tiny_csv), "--target", "y", *common, "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "results.json").read_text())["config"]["table_sha256"] == \
        record["config"]["table_sha256"]  # the same numbers
    assert main(["regress", "--config", str(tmp_path / "r" / "results.json"), "--data-file",
                 str(tmp_path / "europe.csv"), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert json.loads((tmp_path / "again" / "results.json").read_text())["folds"] == record["folds"]
    assert main(["regress", "--data-file", str(tiny_csv), "--target", "y", "--decimal", "comma", *common,
                 "--out", str(tmp_path / "refused")]) == 2
    assert "a decimal comma needs another separator than the comma" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    clash = tmp_path / "clash.json"  # the same clash from a record: a usage error too (it was a runtime one)
    clash.write_text(json.dumps({**record, "config": {**record["config"], "separator": "comma"}}))
    assert main(["regress", "--config", str(clash), "--data-file", str(tmp_path / "europe.csv"), "--out",
                 str(tmp_path / "refused")]) == 2
    assert "decimal 'comma' from" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert main(["regress", "--dataset", "gom", "--decimal", "comma", "--out", str(tmp_path / "gom")]) == 2
    assert "--decimal only applies to --data-file" in capsys.readouterr().err


def test_regress_all_skips_every_missing_data_set_but_finds_the_shipped_gom(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    # A --data-dir without gom's file still finds the copy shipped with the package; every other table is skipped.
    assert main(["regress", "--dataset", "all", "--data-dir", str(empty), "--out", str(tmp_path / "all"), "--folds",
                 "2", "--seeds", "1", "--max-epochs", "1", "--max-rows", "60", "--device", "cpu", "--quiet"]) == 0
    captured = capsys.readouterr()
    shipped = ["gom", "gom-longitude"]
    missing = [name for name in available_tables("regression") if name not in shipped]  # digits classifies
    assert all(f"skipping {name}:" in captured.err for name in missing)
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert list(summary["datasets"]) == shipped and list(summary["skipped"]) == missing
    assert captured.out == (tmp_path / "all" / "summary.md").read_text()
    assert summary["config"]["folds"] == 2 and "git_commit" in summary["config"]["provenance"]
    # the summary is the run's record: --config with it reruns --dataset all, table for table
    assert main(["regress", "--config", str(tmp_path / "all" / "summary.json"), "--data-dir", str(empty), "--out",
                 str(tmp_path / "again"), "--max-epochs", "1", "--device", "cpu", "--quiet"]) == 0
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["datasets"] == summary["datasets"] and again["config"]["seeds"] == 1


def test_dataset_and_data_file_are_mutually_exclusive_and_one_is_required(tiny_csv, tmp_path, capsys):
    for argv in (["--dataset", "gom", "--data-file", str(tiny_csv)], []):
        with pytest.raises(SystemExit) as exit_info:
            main(["regress", *argv, "--out", str(tmp_path)])
        assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["regress", "--data-file", str(tiny_csv), "--out", str(tmp_path)]) == 2
    assert "--data-file needs --target" in capsys.readouterr().err
    assert main(["regress", "--dataset", "gom", "--target", "y", "--out", str(tmp_path)]) == 2
    assert "--target only applies to --data-file" in capsys.readouterr().err


def test_every_option_has_help_and_ablate_lists_its_parameters(capsys):
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in ("regress", "ablate"):
        assert all(action.help for action in commands[name]._actions), name
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    text = capsys.readouterr().out
    assert all(param in text for param in ABLATION_TYPES)  # listed in the help text, kept in step here


def test_a_target_near_the_float_limit_is_scaled_not_zeroed():
    """A target of 1e200 squared overflows: the fold's scale must not become inf (and every MSE 0)."""
    from meta_neighborhoods.datasets.tables import Table

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] + 0.3 * rng.normal(size=60)
    errors = [cross_validate(Table("t", X, target, None, ""), {"knn": TABLE_METHODS["knn"]}, folds=3, seed=0, params={},
                             progress=False)["folds"]["knn"] for target in (y, y * 1e200)]
    assert min(errors[0]) > 0.05 and errors[1] == pytest.approx(errors[0], rel=1e-6)


def test_a_table_too_small_for_the_folds_says_so(tmp_path, capsys):
    path = tmp_path / "six.csv"
    path.write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,3,5\n2,2,2\n5,1,0\n")
    assert main(["regress", "--data-file", str(path), "--target", "y", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "six: 6 rows are too few for 5-fold cross-validation: a training fold would hold 4 rows, and kNN's inner " \
           "5-fold search needs 5" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be a positive integer, got 0"),
    (["--max-epochs", "0"], "--max-epochs must be a positive integer, got 0"),
    (["--max-rows", "-3"], "--max-rows must be a positive integer, got -3"),
    (["--threads", "0"], "--threads must be a positive integer, got 0"),
    (["--threads", "100000"], "--threads must be at most 1024, got 100000"),  # torch would crash on it
])
def test_a_bad_protocol_option_is_refused_before_any_work(tiny_csv, user_folder, capsys, argv, message):
    for command in (["regress"], ["ablate", "--param", "top_k", "--values", "4"]):
        out = user_folder(command[0])
        assert main([*command, "--data-file", str(tiny_csv), "--target", "y", "--out", str(out), *argv]) == 2
        assert message in capsys.readouterr().err and not any(out.iterdir())
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        run_table(load_csv_table(tiny_csv, "y"), api := user_folder("api"), seeds=0, progress=False)
    assert not any(api.iterdir())


@pytest.mark.parametrize("command", ["regress", "ablate"])
@pytest.mark.parametrize("folds, status, message", [
    ("1", 2, "cross-validation needs at least 2 folds, got 1"),
    ("121", 2, "tiny: 120 rows cannot make 121 folds: a test fold needs a row"),
])
def test_folds_the_table_cannot_make_are_refused_before_the_output_folder_is_made(tiny_csv, tmp_path, capsys, command,
                                                                                  folds, status, message):
    ablated = ["--param", "top_k", "--values", "4"] if command == "ablate" else []
    argv = [command, "--data-file", str(tiny_csv), "--target", "y", *ablated, "--folds", folds, "--quiet",
            "--out", str(tmp_path / "run")]
    assert main(argv) == status
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_folder_holding_another_table_run_is_refused_and_overwrite_leaves_one_run(tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("ablation.json", "ablation.md", "ablation.png"):
        (out / name).write_text("an ablation")
    argv = ["regress", "--data-file", str(tiny_csv), "--target", "y", "--folds", "2", "--seeds", "1", "--max-epochs",
            "2", "--quiet", "--out", str(out)]
    assert main(argv) == 1 and "already holds a run (ablation.json" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["folds.png", "results.json",
                                                                                  "results.md"]


def test_an_overwrite_killed_among_its_renames_leaves_a_run_that_can_be_overwritten(tiny_csv, tmp_path,
                                                                                     monkeypatch):
    """The earlier files went first, results.json among them: a run killed after that (a SIGKILL: Ctrl-C waits for
    the renames) left results.md and folds.png beside no record, a folder refused for good as holding files no run
    wrote. The new files are renamed over the old ones, results.json last."""
    out, table = tmp_path / "run", load_csv_table(tiny_csv, "y")
    options = dict(folds=2, seeds=1, estimator_params=FAST, methods=TABLE_METHODS, progress=False)
    run_table(table, out, **options)
    replace, moved = os.replace, []

    def killed_after_one(source, target):
        if io.STAGE in str(source) and io.STAGE not in str(target):
            if moved:
                raise KeyboardInterrupt
            moved.append(Path(target).name)
        replace(source, target)

    monkeypatch.setattr(io.os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_table(table, out, seed=1, overwrite=True, **options)
    monkeypatch.undo()
    assert moved != ["results.json"] and json.loads((out / "results.json").read_text())["fold_seeds"] == [0, 0]
    assert run_table(table, out, seed=1, overwrite=True, **options)["fold_seeds"] == [1, 1]
    assert not any(path.name.startswith(io.STAGE) for path in out.iterdir())  # the killed run's stage, removed


def test_an_overwrite_interrupted_while_writing_leaves_the_earlier_run_whole(tiny_csv, tmp_path, monkeypatch):
    """The new run's files take their places together once all are written: stopped while drawing its figure, it
    left its results.json and results.md and no figure (the earlier one's removed), a run of neither."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("results.json", "results.md", "folds.png"):
        (out / name).write_text("the earlier run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(table_runs, "fold_errors_figure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_table(load_csv_table(tiny_csv, "y"), out, folds=2, seeds=1, estimator_params=FAST,
                  methods=TABLE_METHODS, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "folds.png", "results.json", "results.md"]
    assert all((out / name).read_text() == "the earlier run" for name in ("results.json", "results.md", "folds.png"))


class _Fails(_Mean):
    def fit(self, X, y):
        raise KeyboardInterrupt


def test_a_failed_run_removes_the_folders_it_created_and_only_those(tmp_path):
    """A run stopped before it wrote anything left its new folder (and the table's, under --dataset all) holding
    only its lock; a folder that was there before stays, and so does what a user put there."""
    methods = {"meta_neighborhoods": lambda seed, n_train, params: _Fails()}
    options = dict(folds=2, seeds=1, progress=False, methods=methods)
    with pytest.raises(KeyboardInterrupt):
        run_table(_small_table(30), tmp_path / "new" / "run", **options)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(KeyboardInterrupt):
        run_table(_small_table(30), tmp_path / "mine", **options)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == [".lock", "notes.txt"]
    with pytest.raises(KeyboardInterrupt):
        run_tables(["gom"], tmp_path / "all", max_rows=30, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [["regress"], ["ablate", "--param", "top_k", "--values", "4"]])
def test_a_device_this_machine_lacks_is_refused_before_any_folder_or_fit(tiny_csv, tmp_path, capsys, command):
    argv = [*command, "--data-file", str(tiny_csv), "--target", "y", "--device", "cuda", "--quiet", "--out",
            str(tmp_path / "run")]
    assert main(argv) == 1
    assert "this machine has 0 CUDA GPU(s)" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_every_table_folder_of_an_all_run_is_checked_before_the_first_table_runs(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "boston").mkdir(parents=True)

    def unwritable(folder):
        if folder == out / "boston":
            raise PermissionError(f"cannot write to output directory {folder}")
        return folder

    monkeypatch.setattr(table_runs, "prepare_out_dir", unwritable)
    monkeypatch.setattr(table_runs, "run_table", lambda *a, **k: pytest.fail("a table ran"))
    with pytest.raises(PermissionError, match="boston"):
        run_tables(["gom", "boston"], out, methods={"meta_neighborhoods": TABLE_METHODS["meta_neighborhoods"]})


def test_a_baseline_installed_but_broken_is_skipped_before_any_fit(tmp_path, monkeypatch, caplog):
    broken = tmp_path / "site" / "lightgbm"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("libgomp.so.1: cannot open shared object file")\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lightgbm", raising=False)
    with caplog.at_level("WARNING"):
        methods = available_methods()
    assert "lightgbm" not in methods and TABLE_METHODS.keys() <= methods.keys()
    assert "skipping the lightgbm baseline" in caplog.text and "libgomp" in caplog.text


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_table_folder_that_is_a_link_is_refused_before_anything_is_written_or_removed(tmp_path, overwrite):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ablation.json").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "gom").symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match=r"gom is a link: the folders a run writes must lie inside"):
        run_tables(["gom"], out, methods=dict(TABLE_METHODS), folds=2, seeds=1, progress=False,
                   overwrite=overwrite)
    assert [p.name for p in elsewhere.iterdir()] == ["ablation.json"] and sorted(os.listdir(out)) == ["gom"]


def test_max_rows_draws_its_rows_with_the_run_s_seed():
    """--max-rows draws its subset with --seed: another seed, other rows; the same seed, the same rows."""
    table = _small_table(200)
    drawn = [cross_validation.subset_rows(table, 50, seed).X for seed in (0, 0, 1, 2)]
    np.testing.assert_array_equal(drawn[0], drawn[1])
    assert not np.array_equal(drawn[0], drawn[2]) and not np.array_equal(drawn[2], drawn[3])


@pytest.mark.parametrize("n_train", [6, 7, 8, 9, 11, 13])
def test_knn_never_asks_for_more_neighbours_than_its_smallest_inner_training_split_holds(n_train):
    """kNN's inner 5-fold search on a small training fold: a k above the smallest inner training split fails that
    split's fit, which scikit-learn reports as a FitFailedWarning and a NaN score."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(n_train, 2)), rng.normal(size=n_train)
    search = cross_validation._knn(seed=0, n_train=n_train, params={})
    smallest = n_train - math.ceil(n_train / cross_validation.KNN_INNER_FOLDS)
    assert max(search.param_grid["knn__n_neighbors"]) <= smallest
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_an_ablated_value_wins_over_the_same_setting_in_estimator_params(tmp_path, monkeypatch):
    """run_ablation(..., estimator_params=FAST) where FAST sets dictionary_size too: each ablated value must reach
    its fits, or every value runs FAST's size and the ablation compares a setting with itself."""
    monkeypatch.setitem(cross_validation.ESTIMATORS, "regression",
                        functools.partial(MetaNeighborhoodsRegressor, max_epochs=2))
    results = run_ablation(_small_table(30), tmp_path / "a", "dictionary_size", ["2", "4"], folds=2, seeds=1,
                           estimator_params=FAST, progress=False)
    assert results["values"] == [2, 4]
    assert results["dictionary_sizes"] == [[2, 2], [4, 4]]


# ---------------------------------------------------------------------------------------------------
# --task classification


def test_regress_cross_validates_classifiers_on_stratified_folds_by_their_error_rate(tmp_path, capsys,
                                                                                     fast_estimators):
    """Every method a classifier, each fold holding each class's share of the rows, the error the share of test
    rows misclassified; the record reruns (regress --config) and fits the final classifier (fit --config)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(75, 3)), columns=["a", "b", "c"])
    frame["kind"] = np.where(frame.a > 0.4, "x", np.where(frame.b > 0, "y", "z"))
    frame.to_csv(tmp_path / "kinds.csv", index=False)
    common = ["--data-file", str(tmp_path / "kinds.csv"), "--target", "kind", "--folds", "3", "--seeds", "2",
              "--quiet"]
    assert main(["regress", *common, "--task", "classification", "--out", str(tmp_path / "r")]) == 0
    assert "error rate, the share of test rows misclassified" in capsys.readouterr().out
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["metric"] == "error_rate" and results["config"]["task"] == "classification"
    labels, X = frame.kind.to_numpy(), frame[["a", "b", "c"]].to_numpy()
    for entry, (train, test) in enumerate(StratifiedKFold(3, shuffle=True, random_state=1).split(X, labels)):
        boosted = HistGradientBoostingClassifier(random_state=1).fit(X[train], labels[train])
        assert results["folds"]["hist_gradient_boosting"][3 + entry] == np.mean(boosted.predict(X[test]) !=
                                                                                labels[test])
        assert results["log_loss"]["hist_gradient_boosting"][3 + entry] == pytest.approx(
            log_loss(labels[test], boosted.predict_proba(X[test]), labels=boosted.classes_))
    assert set(results["log_loss"]) == set(results["folds"]) and all(len(v) == 6 for v in results["log_loss"].values())
    assert "| log-loss (mean) |" in (tmp_path / "r" / "results.md").read_text()
    assert all(np.isclose(error * 25, round(error * 25)) for errors in results["folds"].values() for error in errors)
    assert main(["regress", "--config", str(tmp_path / "r" / "results.json"), "--data-file",
                 str(tmp_path / "kinds.csv"), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["folds"]["knn"] == results["folds"]["knn"] and again["metric"] == "error_rate"
    assert main(["fit", "--config", str(tmp_path / "r" / "results.json"), "--data-file", str(tmp_path / "kinds.csv"),
                 "--out", str(tmp_path / "model"), "--quiet"]) == 0
    assert json.loads((tmp_path / "model" / "fit.json").read_text())["classes"] == ["x", "y", "z"]
    capsys.readouterr()
    assert main(["regress", "--dataset", "all", "--task", "classification", "--out", str(tmp_path / "all")]) == 2
    assert "--dataset all runs the regression tables: give --task classification one table, digits, or a " \
        "--data-file" in capsys.readouterr().err


def test_a_table_with_two_features_of_one_name_runs_and_is_said_to_be_refused_by_fit(tiny_csv, tmp_path, caplog):
    frame = pd.read_csv(tiny_csv)
    frame.columns = ["x" if name != "y" else "y" for name in frame.columns]  # every feature named x
    frame.to_csv(tmp_path / "twice.csv", index=False)
    with caplog.at_level("WARNING"):
        assert main(["regress", "--data-file", str(tmp_path / "twice.csv"), "--target", "y", "--folds", "2",
                     "--seeds", "1", "--max-epochs", "2", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert caplog.text.count("twice: more than one feature is named 'x', which a run takes by position; fit refuses "
                             "such a table") == 1


def test_a_regression_target_is_refused_as_class_labels_before_any_folder(tiny_csv, tmp_path, capsys):
    assert main(["regress", "--data-file", str(tiny_csv), "--target", "y", "--task", "classification", "--out",
                 str(tmp_path / "r"), "--quiet"]) == 1
    assert "classification needs class labels" in capsys.readouterr().err and not (tmp_path / "r").exists()
    pd.DataFrame({"a": range(30), "price": [151075.5] + [2, 3] * 14 + [4]}).to_csv(tmp_path / "p.csv", index=False)
    assert main(["regress", "--data-file", str(tmp_path / "p.csv"), "--target", "price", "--task", "classification",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 1
    assert "the target holds fractions such as 151075.5 (" in capsys.readouterr().err  # as written, not 151076


def test_the_registered_classification_table_runs_with_its_own_task(tmp_path, capsys, fast_estimators):
    from meta_neighborhoods.datasets.tables import available_tables

    assert "digits" in available_tables() and "digits" not in available_tables("regression")
    assert available_tables("classification") == ["digits"]
    for argv, message in ((["regress", "--dataset", "digits", "--task", "regression"],
                           "digits is a classification table: give --task classification, or no --task"),
                          (["fit", "--dataset", "gom", "--task", "classification"],
                           "gom is a regression table: give --task regression, or no --task")):
        assert main([*argv, "--out", str(tmp_path / "refused"), "--quiet"]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert main(["regress", "--dataset", "digits", "--max-rows", "120", "--folds", "2",  # its task, as the table's
                 "--seeds", "1", "--out", str(tmp_path / "digits"), "--quiet"]) == 0
    results = json.loads((tmp_path / "digits" / "results.json").read_text())
    assert (results["dataset"], results["n"], results["d"], results["metric"]) == ("digits", 120, 64, "error_rate")


def test_ablate_on_a_classification_table_measures_the_classifier_s_error_rate(tmp_path, capsys, fast_estimators):
    """The same folds for every value, stratified by class; the record reruns fold for fold (--config)."""
    small = ["--max-rows", "120", "--folds", "2", "--seeds", "1", "--quiet"]
    assert main(["ablate", "--dataset", "digits", "--param", "top_k", "--values", "1", "2", *small, "--out",
                 str(tmp_path / "a")]) == 0
    results = json.loads((tmp_path / "a" / "ablation.json").read_text())
    assert results["metric"] == "error_rate" and results["config"]["task"] == "classification"
    assert all(np.isclose(error * 60, round(error * 60)) for errors in results["folds"] for error in errors)
    assert len(results["log_loss"]) == 2 and all(len(losses) == 2 for losses in results["log_loss"])
    said = capsys.readouterr().out
    assert "ablation of top_k (error rate, the share of test rows misclassified;" in said
    assert "| p vs first | log-loss (mean) |" in said
    assert main(["ablate", "--config", str(tmp_path / "a" / "ablation.json"), "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "b" / "ablation.json").read_text())["folds"] == results["folds"]
    assert main(["ablate", "--dataset", "digits", "--task", "regression", "--param", "top_k", "--values", "1", "2",
                 *small, "--out", str(tmp_path / "c")]) == 2
    assert "digits is a classification table" in capsys.readouterr().err


def _kinds(tmp_path, labels) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(len(labels), 3)), columns=["a", "b", "c"]).assign(kind=labels)
    frame.to_csv(tmp_path / "kinds.csv", index=False)
    return tmp_path / "kinds.csv"


def test_a_class_too_small_for_the_folds_is_refused_and_small_classes_split_without_regard_to_class(
        tmp_path, capsys, fast_estimators):
    """A class of a single row: refused before any folder (a training fold would lack it); classes too small for
    kNN's inner 5 folds or the search's 80/20 split: those split without regard to class."""
    rare = _kinds(tmp_path, ["b", *["a"] * 39])
    assert main(["regress", "--data-file", str(rare), "--target", "kind", "--task", "classification", "--folds", "2",
                 "--seeds", "1", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "class 'b' has a single row, which the training rows of the fold that tests it would lack" in \
        capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    small = _kinds(tmp_path, [*["x", "y"] * 11, "z", "z"])  # z: a row in each training fold, for kNN and search
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*least populated class")  # scikit-learn's, of a split by class
        results = run_table(load_csv_table(small, "kind", labels=True), tmp_path / "s", folds=2, seeds=1,
                            search=True, progress=False, task="classification",
                            estimator_params={"max_epochs": 2, "n_iter_no_change": 1})
    assert len(results["architectures"]) == 2 and all(0 <= e <= 1 for e in results["folds"]["knn"])


def test_a_classification_run_takes_classifiers_and_a_baseline_without_error_has_no_ratio(tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    separable = load_csv_table(_kinds(tmp_path, ["x", "y"] * 20), "kind", labels=True)
    separable = dataclasses.replace(separable, X=np.c_[separable.X, separable.y],  # the label, as a feature
                                    feature_names=[*separable.feature_names, "label"])
    with pytest.raises(ConfigError, match="method 'knn' gives a GridSearchCV, not a classifier"):
        run_table(separable, tmp_path / "regressors", folds=2, seeds=1, methods=TABLE_METHODS,
                  task="classification", progress=False)
    assert not (tmp_path / "regressors").exists()
    tree = functools.partial(lambda *, seed, n_train, params: DecisionTreeClassifier(random_state=seed))
    results = run_table(separable, tmp_path / "tree", folds=2, seeds=1, progress=False, task="classification",
                        methods={"vanilla": tree, "meta_neighborhoods": tree})
    assert results["folds"]["vanilla"] == [0.0, 0.0] and results["ratio"] == {"vanilla": None,
                                                                                "meta_neighborhoods": None}
    json.loads((tmp_path / "tree" / "results.json").read_text(), parse_constant=pytest.fail)  # no NaN: valid JSON
    assert "| vanilla | 0.000 ± 0.000 | — |" in (tmp_path / "tree" / "results.md").read_text()


def test_classes_the_rows_drawn_lack_are_warned_of_in_a_run(tmp_path, capsys, fast_estimators):
    path = _kinds(tmp_path, [*["a", "b"] * 30, "rare", "rare"])
    assert main(["regress", "--data-file", str(path), "--target", "kind", "--task", "classification", "--folds", "2",
                 "--seeds", "1", "--max-rows", "20", "--seed", "2", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "the 20 rows drawn (max_rows) hold 2 of the table's 3 classes: the model never predicts 'rare'" in \
        capsys.readouterr().err


def test_a_records_task_is_its_tables_and_a_class_smaller_than_the_folds_is_said_once(tmp_path, capsys,
                                                                                      fast_estimators):
    """A record's task reruns its table, not another the command line names; a record without one leaves it to the
    table; a class of fewer rows than folds is said in the run's words, not scikit-learn's."""
    small = ["--max-rows", "60", "--folds", "2", "--seeds", "1", "--quiet"]
    assert main(["regress", "--dataset", "digits", *small, "--out", str(tmp_path / "d")]) == 0
    record = json.loads((tmp_path / "d" / "results.json").read_text())
    assert record["config"]["task"] == "classification"
    del record["config"]["task"]  # a record from before tasks: the table's own
    (tmp_path / "untasked.json").write_text(json.dumps(record))
    assert main(["fit", "--config", str(tmp_path / "untasked.json"), "--out", str(tmp_path / "f"), "--quiet"]) == 0
    assert json.loads((tmp_path / "f" / "fit.json").read_text())["task"] == "classification"
    assert main(["regress", "--config", str(tmp_path / "d" / "results.json"), "--dataset", "gom", "--table-sha256",
                 "none", *small, "--out", str(tmp_path / "g")]) == 0  # digits' task does not follow it onto gom
    assert json.loads((tmp_path / "g" / "results.json").read_text())["metric"] == "mse"
    capsys.readouterr()
    path = _kinds(tmp_path, [*["x", "y"] * 20, "z", "z", "z"])
    assert main(["regress", "--data-file", str(path), "--target", "kind", "--task", "classification", "--folds", "5",
                 "--seeds", "1", "--out", str(tmp_path / "k"), "--quiet"]) == 0
    error = capsys.readouterr().err
    assert "kinds: class 'z' has 3 rows, fewer than the 5 folds: 2 test fold(s) lack it" in error
    assert "least populated class" not in error
