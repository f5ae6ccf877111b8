"""The benchmark scripts run, on the smallest settings, and record what measured them: CI runs no benchmark, so
this is what keeps them from rotting between the sessions that time them."""

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(*argv: str, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=BENCHMARKS, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _refused(*argv: str) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=BENCHMARKS, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr


def _recorded(provenance: dict, script: str) -> None:
    assert provenance["command"][0] == script and provenance["threads"] >= 1
    assert {"torch", "numpy", "meta_neighborhoods", "git_commit", "time"} <= set(provenance)


def _headed(text: str, printed: str, provenance: dict) -> None:
    """A text result (``--out``) is what the script printed under a header of the record its JSON holds: the
    commit and whether the clone had uncommitted changes, the command, the versions, the threads."""
    first, command, versions, *body = text.splitlines(keepends=True)
    changes = {True: "uncommitted changes", False: "no uncommitted changes", None: "not a git clone"}
    assert first.startswith(f"# commit {provenance['git_commit']} ({changes[provenance['git_dirty']]}), ")
    assert provenance["time"] in first
    assert command.startswith(f"# command: {' '.join(provenance['command'])}  (in ")
    assert versions.startswith(f"# torch {provenance['torch']}, python {provenance['python']}, ")
    assert f", {provenance['threads']} thread(s), " in versions
    assert "".join(body) == printed


COST_CASES = [
    ("step_parts.py", ["--sizes", "64", "256", "--repeats", "1"], lambda d: d["ms"]),  # 64 <= K: no choice
    ("adaptation_speed.py", ["--keys", "64", "--oracle-repeats", "1", "--sizes", "64", "--ks", "0", "8", "128",
                             "--repeats", "1"],  # K = 128 >= S: every key, as full attention
     lambda d: {f"{i} {key}": value for i, one in enumerate([d, *d["configs"]]) for key, value in one.items()
                if key.endswith("_ms")}),
    ("adaptation_speed.py", ["--head", "periodic", "--adapt", "last", "--keys", "64", "--oracle-repeats", "1",
                             "--sizes", "64", "--ks", "0", "8", "128", "--repeats", "1"],  # a declared last layer
     lambda d: {f"{i} {key}": value for i, one in enumerate([d, *d["configs"]]) for key, value in one.items()
                if key.endswith("_ms")}),
    ("predict_blocks.py", ["--sizes", "0", "64", "--blocks", "4096", "512", "--rows", "64", "--repeats", "1"],
     lambda d: d["us_per_row"]),
    ("settled_choice.py", ["--sizes", "64", "--rows", "64", "--single", "2", "--tie-seeds", "1", "--repeats", "1"],
     lambda d: d["us_per_row"]),
    ("fit_scale.py", ["--rows", "2000", "--settings", "vanilla", "defaults", "--repeats", "1"],
     lambda d: {f"{name} {key}": value for name, one in d["settings"].items() for key, value in one.items()}),
    ("train_throughput.py", ["--batch", "2", "--steps", "1"],  # its text result recorded no commit nor command
     lambda d: {f"{r['backbone']} {r['method']}": r["ms_per_step"] for r in d["results"]}),
    ("ifilm_ops.py", ["--backbone", "convnet4", "--batch", "2", "--steps", "1"], lambda d: d["ms"]),
    ("refine_cost.py", ["--tables", "gom", "--max-rows", "60", "--max-epochs", "3", "--repeats", "1"],
     lambda d: {f"{table} {name}": s for table, one in d["tables"].items() for name, s in one["seconds"].items()}),
    ("partial_fit_stream.py", ["--table", "gom", "--max-rows", "100", "--chunk", "40", "--passes", "2", "--seeds", "1"],
     lambda d: {f"{setting} {variant}": runs[0]["seconds"] for setting, variants in d["results"].items()
                for variant, runs in variants.items()}),
]
RUN_HERE = ({script for script, _, _ in COST_CASES} | {"defaults_sweep.py", "inference_vs_knn.py"}
            | {"timing.py", "record.py"})  # helpers, no command


@pytest.mark.parametrize("script, options, measured", COST_CASES)
def test_a_cost_benchmark_writes_its_figures_and_provenance(tmp_path, script, options, measured):
    printed = _run(script, *options, "--json", str(tmp_path / "out.json"), "--out", str(tmp_path / "out.txt"))
    result = json.loads((tmp_path / "out.json").read_text())
    assert measured(result) and all(value > 0 for value in measured(result).values())
    _recorded(result["provenance"], script)
    _headed((tmp_path / "out.txt").read_text(), printed, result["provenance"])
    if script == "adaptation_speed.py":  # the layout issue 10 asks for
        assert {"vanilla_ms", "fast_ms", "generic_ms", "loop_ms", "batch", "keys", "adapt", "head"} <= set(result)
        assert (result["head"], result["adapt"]) == (("periodic", "last") if "periodic" in options else ("mlp", "all"))
        assert [(c["dictionary_size"], c["top_k"]) for c in result["configs"]] == [(64, None), (64, 8), (64, 128)]
    if script == "fit_scale.py":  # what the children ran with, not the parent's threads
        assert result["provenance"]["threads"] == result["threads"] == 2


def test_inference_vs_knn_times_each_prediction_in_interleaved_rounds_and_reports_medians(tmp_path):
    """Each prediction was timed once, on a machine whose load varies 2-4x from run to run."""
    env = {**os.environ, "META_NEIGHBORHOODS_DATA": str(tmp_path)}  # no protein file: skipped, as without data
    printed = _run("inference_vs_knn.py", "--rows", "10000", "--fresh-rows", "2000", "--fit-epochs", "1",
                   "--threads", "1", "--repeats", "2",
                   "--json", str(tmp_path / "out.json"), "--out", str(tmp_path / "out.txt"), env=env)
    result = json.loads((tmp_path / "out.json").read_text())
    assert "median of 2 interleaved rounds" in printed and "protein: skipped" in printed
    measured = result["results"] + result["memory_vs_training_rows"]
    assert {(r["case"], r["model"]) for r in measured} == {(case, model) for model in ("MN", "kNN") for case in
                                                          ("synthetic", "synthetic, fewer training rows")}
    for r in measured:
        assert len(r["predict_s_rounds"]) == 2 and r["predict_s"] == statistics.median(r["predict_s_rounds"]) > 0
    _recorded(result["provenance"], "inference_vs_knn.py")
    _headed((tmp_path / "out.txt").read_text(), printed, result["provenance"])


def test_chaos_resume_reports_epoch_0_for_a_run_killed_before_its_first_checkpoint(monkeypatch, tmp_path):
    """A kill during start-up left no checkpoint, and reading its epoch raised FileNotFoundError, which ended the
    check (CheckpointError alone was caught)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import chaos_resume

    assert chaos_resume._epoch(tmp_path) == 0


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in RUN_HERE))
def test_every_other_benchmark_still_imports_what_it_uses(script):
    """The slow ones are not run here; their imports are (memory.py's import of a constant gone from
    inference_vs_knn.py went unseen for sessions)."""
    assert "usage:" in _run(script, "--help")


def test_the_defaults_sweep_records_each_method_s_errors_with_its_provenance_and_reports(tmp_path):
    candidate = "S4096-k128-drop-last-layer-fallback"
    common = ["defaults_sweep.py", "--out", str(tmp_path), "--tables", "gom", "--seeds", "1", "--folds", "2",
              "--max-epochs", "2", "--max-rows", "60", "--threads", "1", "--quiet"]
    _run(*common, "--candidates", candidate)
    sweep = json.loads((tmp_path / "gom.json").read_text())
    assert set(sweep["folds"]) == set(sweep["provenance"]) == {"knn", "vanilla", candidate}
    assert all(len(errors) == 2 and min(errors) > 0 for errors in sweep["folds"].values())
    for provenance in sweep["provenance"].values():
        _recorded(provenance, "defaults_sweep.py")
        assert provenance["threads"] == 1  # what a rerun must match (README, Table 2)
    assert candidate in _run("defaults_sweep.py", "--out", str(tmp_path), "--report")
    table2 = _run("defaults_sweep.py", "--out", str(tmp_path), "--table2", candidate)
    won, tied, lost = (int(n) for n in re.search(r"\| gom \| .* \| (\d+)/(\d+)/(\d+) \|", table2).groups())
    assert "MN won/tied/lost" in table2 and won + tied + lost == 2  # the fallback ties vanilla where it keeps it

    # a method run on other folds (further repeats given the sweep's own folder) is refused before it runs
    written = (tmp_path / "gom.json").read_bytes()
    assert "repeated over seeds [0], not --folds 2 --seed 3" in _refused(*common, "--seed", "3", "--rows-seed", "0",
                                                                        "--candidates", "S512")
    assert (tmp_path / "gom.json").read_bytes() == written
    (tmp_path / "more").mkdir()  # further repeats that lack a table: the rule is not judged on fewer tables
    assert "gom.json is missing" in _refused("defaults_sweep.py", "--out", str(tmp_path), "--report",
                                             "--more-seeds", str(tmp_path / "more"))
    assert "not every table" in _refused("defaults_sweep.py", "--out", str(tmp_path), "--table2", candidate, "S512")


def test_a_shared_training_setting_is_compared_on_the_repeats_both_folders_ran(tmp_path):
    """A screen of one repeat (here periodic embeddings, for vanilla and MN alike) against a sweep of two on the same
    rows: compared fold for fold on the first repeat, which both ran."""
    candidate = "S4096-k128-drop-last-layer"
    common = ["defaults_sweep.py", "--tables", "gom", "--folds", "2", "--max-epochs", "2", "--max-rows", "60",
              "--threads", "1", "--quiet", "--candidates", candidate]
    _run(*common, "--out", str(tmp_path / "base"), "--seeds", "2")
    _run(*common, "--out", str(tmp_path / "periodic"), "--seeds", "1", "--input-transform", "periodic")
    base, screen = (json.loads((tmp_path / name / "gom.json").read_text()) for name in ("base", "periodic"))
    assert screen["params"]["input_transform"] == "periodic" and screen["fold_seeds"] == base["fold_seeds"][:2]
    assert all(screen["folds"][m] != base["folds"][m][:2] for m in ("vanilla", candidate))  # another network
    printed = _run("defaults_sweep.py", "--out", str(tmp_path / "base"), "--compare-training",
                   str(tmp_path / "periodic"), candidate)
    row = re.search(r"\| gom \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", printed).groups()
    first = sum(base["folds"]["vanilla"][:2]) / 2  # the first repeat's mean, not both repeats'
    assert float(row[0]) == pytest.approx(first, rel=1e-3) and float(row[2]) == pytest.approx(
        float(row[1]) / float(row[0]), abs=2e-3)
    del screen["folds"][candidate]  # a screen that ran vanilla alone on a table: left out, and said
    (tmp_path / "periodic" / "gom.json").write_text(json.dumps(screen))
    done = subprocess.run([sys.executable, "defaults_sweep.py", "--out", str(tmp_path / "base"), "--compare-training",
                           str(tmp_path / "periodic"), candidate], cwd=BENCHMARKS, capture_output=True, text=True)
    assert done.returncode == 0 and "| gom |" not in done.stdout and "gom: left out" in done.stderr


@pytest.mark.parametrize("quantile", [False, True])
def test_the_sweep_s_refine_gives_every_mlp_the_estimator_s_second_phase(monkeypatch, tmp_path, capsys, quantile):
    """--refine is ``refine_factor`` for vanilla and the candidates alike, behind a quantile transform too; kNN and
    the boosting baselines take no learning rate. A leave-one-out candidate, which the second phase cannot
    continue, is refused before any work."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import defaults_sweep

    built = {}

    def run(table, todo, **kwargs):
        built.update({method: factory(seed=0, n_train=50, params={}) for method, factory in todo.items()})
        raise SystemExit(0)  # nothing written: the estimators are what this test reads

    monkeypatch.setattr(defaults_sweep, "cross_validate", run)
    monkeypatch.setattr(sys, "argv", ["defaults_sweep.py", "--out", str(tmp_path), "--tables", "gom", "--refine", "0.1",
                                      "--candidates", "S512", *(["--input-transform", "quantile"] if quantile else [])])
    with pytest.raises(SystemExit):
        defaults_sweep.main()
    networks = {method: (model[-1] if quantile else model) for method, model in built.items() if method != "knn"}
    assert set(networks) == {"vanilla", "S512"} and {m.refine_factor for m in networks.values()} == {0.1}
    assert networks["vanilla"].dictionary_size == 0 and networks["S512"].dictionary_size == 512
    monkeypatch.setattr(sys, "argv", ["defaults_sweep.py", "--out", str(tmp_path), "--tables", "gom", "--refine", "0.1",
                                      "--candidates", "S4096-k32-drop-loo"])
    with pytest.raises(SystemExit, match="2"):
        defaults_sweep.main()
    monkeypatch.setattr(sys, "argv", ["defaults_sweep.py", "--out", str(tmp_path), "--tables", "gom", "--refine", "2"])
    with pytest.raises(SystemExit, match="2"):  # vanilla alone: the estimator's bound, before any table runs
        defaults_sweep.main()
    assert "vanilla: refine_factor must be None or a number in (0, 1), got 2.0" in capsys.readouterr().err


def test_fit_scale_says_its_seconds_are_a_whole_fit_s_and_which_settings_failed_in_some_rounds(monkeypatch, capsys):
    """A setting that failed in one round of two was reported as if both had counted; and "s / epoch" read as an
    epoch's training, where it is the wall time of a whole one-epoch fit (set-up, validation, the fallback)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import fit_scale

    rounds = {"vanilla": iter([{"seconds_per_epoch": 4.0}, {"seconds_per_epoch": 4.0}]),
              "defaults": iter([{"seconds_per_epoch": 100.0}, {"error": "MemoryError"}])}
    monkeypatch.setattr(fit_scale, "_child", lambda name, args: {"fit_mb": 1.0, "peak_mb": 2.0, "threads": 2,
                                                                 **next(rounds[name])})
    monkeypatch.setattr(sys, "argv", ["fit_scale.py", "--settings", "vanilla", "defaults", "--repeats", "2"])
    fit_scale.main()
    out = capsys.readouterr().out
    assert "s / one-epoch fit" in out and "s / epoch " not in out
    assert "failed in 1 of 2 rounds (median of the other 1): MemoryError" in out
    assert "failed in" not in out.split("defaults")[0]  # vanilla, which never failed, says nothing
