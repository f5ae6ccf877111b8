"""``--config FILE``: options from TOML, YAML and JSON files and from the records of earlier runs; flags win over
the file; every bad file is refused with one line naming the file and the key, before any work."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from meta_neighborhoods.cli import main
from meta_neighborhoods.commands import COMMANDS
from meta_neighborhoods.datasets.files import shared_data_dir


@pytest.fixture
def parsed(monkeypatch):
    """``parsed(argv)``: the options a command receives, its work replaced by nothing from the first call on."""
    received = {}

    def parse(argv):
        for command in COMMANDS:
            monkeypatch.setattr(command, "run", lambda args: received.update(args=args) or 0)
        assert main(argv) == 0
        return received.pop("args")

    return parse


def _write(path, text: str):
    path.write_text(text)
    return str(path)


def _refused(capsys, argv, *parts) -> str:
    """Exit status 2 and one line on stderr that holds every part."""
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and all(part in error for part in parts), error
    return error


# ---------------------------------------------------------------------------------------------------
# Files of options


def test_a_toml_file_gives_options_and_the_command_line_wins(tmp_path, parsed):
    config = _write(tmp_path / "spiral.toml", 'out = "runs/s"\nepochs = 7\nseed = 3\nno-animation = true\n'
                                              'device = "cpu"\n')
    args = parsed(["spiral", "--config", config])  # --out, a required option, comes from the file
    assert (args.out, args.epochs, args.seed, args.no_animation, args.device) == ("runs/s", 7, 3, True, "cpu")
    args = parsed(["spiral", "--config", config, "--seed", "5", "--out", "elsewhere"])
    assert (args.out, args.epochs, args.seed) == ("elsewhere", 7, 5)
    assert parsed(["spiral", "--conf", config]).epochs == 7  # abbreviated as argparse allows
    config = _write(tmp_path / "bom.toml", "\ufeffepochs = 4\n")  # saved by an editor that writes one (was refused)
    assert parsed(["spiral", "--config", config, "--out", "o"]).epochs == 4


def test_a_json_file_takes_dashes_or_underscores_and_floats_from_integers(tmp_path, parsed):
    config = _write(tmp_path / "r.json", json.dumps({"dataset": "gom", "out": "o", "max_epochs": 2, "learning-rate": 1,
                                                     "top_k": 4, "search": True}))
    args = parsed(["regress", "--config", config])
    assert (args.dataset, args.max_epochs, args.learning_rate, args.top_k, args.search) == ("gom", 2, 1.0, 4, True)
    assert isinstance(args.learning_rate, float)


def test_a_yaml_file_gives_a_list_option_whose_items_may_be_numbers(tmp_path, parsed):
    pytest.importorskip("yaml")
    config = _write(tmp_path / "a.yaml", "dataset: gom\nout: o\nparam: top_k\nvalues: [none, 4, 16]\nfolds: 2\n")
    args = parsed(["ablate", "--config", config])
    assert (args.param, args.values, args.folds) == ("top_k", ["none", "4", "16"], 2)
    assert parsed(["ablate", "--config", config, "--values", "8"]).values == ["8"]


def test_a_flag_on_the_command_line_replaces_the_files_choice_of_an_exclusive_pair(tmp_path, parsed):
    config = _write(tmp_path / "r.toml", 'dataset = "all"\nout = "o"\nquiet = true\n')
    args = parsed(["regress", "--config", config, "--data-file", "t.csv", "--target", "y", "-v"])
    assert (args.dataset, args.data_file, args.quiet, args.verbose) == (None, "t.csv", False, True)
    args = parsed(["regress", "--config", config])
    assert (args.dataset, args.data_file, args.quiet, args.verbose) == ("all", None, True, False)


def test_an_options_file_s_data_dir_is_left_aside_for_a_data_file_and_the_command_line_s_refused(tmp_path, parsed):
    """A file of options for the registered tables' runs may name their folder; a run on a CSV file from it failed
    when --data-dir with --data-file became a usage error, which a review of the change found."""
    from meta_neighborhoods.commands.table_source import check_target
    from meta_neighborhoods.commands.common import UsageError

    config = _write(tmp_path / "o.toml", f'data-dir = "{tmp_path}"\nout = "o"\n')
    args = parsed(["regress", "--config", config, "--data-file", "t.csv", "--target", "y"])
    check_target(args)
    assert args.data_dir is None
    args = parsed(["regress", "--data-dir", str(tmp_path), "--data-file", "t.csv", "--target", "y", "--out", "o"])
    with pytest.raises(UsageError, match="--data-dir only applies to --dataset"):
        check_target(args)


def test_null_leaves_an_option_at_its_default(tmp_path, parsed):
    config = _write(tmp_path / "r.json", '{"dataset": "gom", "out": "o", "max_rows": null}')
    assert parsed(["regress", "--config", config]).max_rows is None


def test_an_unknown_key_lists_only_the_options_a_file_may_give(tmp_path, capsys):
    config = _write(tmp_path / "u.toml", 'dataset = "gom"\nepoch = 3\n')
    error = _refused(capsys, ["regress", "--config", config, "--out", str(tmp_path / "o")], "unknown option 'epoch'")
    listed = error.split("its options: ")[1].split(", ")
    assert "max-epochs" in listed and not {"overwrite", "resume", "config", "help"} & set(listed)


@pytest.mark.parametrize("name, text, parts", [
    ("u.toml", 'out = "o"\nepoch = 3\n', ["unknown option 'epoch' for meta-neighborhoods spiral", "epochs"]),
    ("c.toml", 'out = "o"\nconfig = "other.toml"\n', ["unknown option 'config'"]),
    ("t.toml", 'out = "o"\nepochs = "3"\n', ["epochs must be an integer, got '3'"]),
    ("f.toml", 'out = "o"\nepochs = 2.5\n', ["epochs must be an integer, got 2.5"]),
    ("b.toml", 'out = "o"\nno-animation = "yes"\n', ["no-animation must be true or false, got 'yes'"]),
    ("d.toml", 'out = "o"\ndevice = "tpu"\n', ["device must be one of auto, cpu, cuda; got 'tpu'"]),
    ("n.json", '{"out": "o", "seed": null}', ["seed must be an integer, got None"]),
    ("l.json", '[["epochs", 3]]', ["expected a mapping of option names to values, got list"]),
    ("s.json", '"epochs"', ["expected a mapping of option names to values, got str"]),
    ("twice.json", '{"out": "o", "no-animation": true, "no_animation": true}',
     ["option no_animation is given twice"]),
    ("syntax.toml", 'epochs = \n', ["not valid TOML: Invalid value"]),
    ("syntax.json", '{"epochs": 3', ["not valid JSON"]),
    ("options.ini", 'epochs = 3\n', ["unknown kind of config file; --config reads .toml, .yaml, .yml or .json"]),
    ("quiet.toml", 'out = "o"\nquiet = true\nverbose = true\n', ["--quiet and --verbose exclude each other"]),
    ("empty.toml", 'out = ""\n', ["out must be a file or folder's path, got ''"]),  # not the current folder
])
def test_a_bad_file_is_refused_naming_the_file_and_the_key(tmp_path, capsys, monkeypatch, name, text, parts):
    monkeypatch.chdir(tmp_path)  # a file's relative out: a check that goes missing runs there, not in the checkout
    config = _write(tmp_path / name, text)
    _refused(capsys, ["spiral", "--config", config], f"meta-neighborhoods spiral: error: {config}", *parts)


def test_a_list_option_needs_a_list_of_its_type(tmp_path, capsys):
    config = _write(tmp_path / "a.toml", 'dataset = "gom"\nout = "o"\nparam = "top_k"\nvalues = 4\n')
    _refused(capsys, ["ablate", "--config", config], "values must be a non-empty list, got 4")
    config = _write(tmp_path / "b.toml", 'dataset = "gom"\nout = "o"\nparam = "top_k"\nvalues = [true]\n')
    _refused(capsys, ["ablate", "--config", config], "values must be a string, got True")
    config = _write(tmp_path / "c.toml", 'dataset = "iris"\nout = "o"\nparam = "top_k"\nvalues = [1]\n')
    _refused(capsys, ["ablate", "--config", config], "dataset must be one of gom, ")


def test_a_missing_a_too_large_or_a_special_file_is_refused(tmp_path, capsys):
    missing = str(tmp_path / "nope.toml")
    _refused(capsys, ["spiral", "--config", missing], f"config file {missing} does not exist or is not a regular file")
    (tmp_path / "folder.toml").mkdir()
    _refused(capsys, ["spiral", "--config", str(tmp_path / "folder.toml")], "is not a regular file")
    large = _write(tmp_path / "large.json", json.dumps({"out": "o", "target": "y" * 2_000_000}))
    _refused(capsys, ["regress", "--config", large], f"{large}: larger than 1024 KiB, too large for a config file")
    deep = _write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000)
    _refused(capsys, ["spiral", "--config", deep], f"{deep}: not valid JSON")


def test_yaml_builds_plain_data_only(tmp_path, capsys):
    pytest.importorskip("yaml")
    marker = tmp_path / "ran"
    config = _write(tmp_path / "evil.yaml", f'out: !!python/object/apply:os.system ["touch {marker}"]\n')
    _refused(capsys, ["spiral", "--config", config], f"{config}: not valid YAML: could not determine a constructor")
    assert not marker.exists()


def test_yaml_aliases_are_refused_before_they_expand(tmp_path, capsys):
    """Nine levels of nine aliases are 10^9 items once expanded (a 'billion laughs' file of 450 bytes)."""
    pytest.importorskip("yaml")
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)] + [f"folds: [{', '.join(['*l8'] * 9)}]"]
    config = _write(tmp_path / "laughs.yaml", "\n".join(lines) + "\n")
    _refused(capsys, ["spiral", "--config", config], f"{config}: not valid YAML: it uses an alias (*name)")


@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_yaml_is_refused_at_once(tmp_path, capsys, depth):
    """Pure-Python parsing took 51 s for 20,000 levels of [ ] (40 kB, within the size bound)."""
    pytest.importorskip("yaml")
    config = _write(tmp_path / "deep.yaml", "folds: " + "[" * depth + "]" * depth + "\n")
    started = time.perf_counter()
    _refused(capsys, ["spiral", "--config", config], f"{config}: ")  # too deep, or a value no option takes
    assert time.perf_counter() - started < 5


def test_yaml_without_pyyaml_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # import yaml now fails
    config = _write(tmp_path / "s.yml", "out: o\n")
    _refused(capsys, ["spiral", "--config", config], f"{config}: reading YAML needs PyYAML: pip install pyyaml, "
                                                     "or use a TOML or JSON file")


def test_resume_takes_no_config_file(tmp_path, capsys):
    config = _write(tmp_path / "c.toml", "epochs = 3\n")
    _refused(capsys, ["classify", "--resume", str(tmp_path), "--config", config],
             "--resume continues a run with its saved configuration; it takes no --config")


# ---------------------------------------------------------------------------------------------------
# Records of earlier runs


def test_a_classify_run_repeats_from_its_config_json(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
            "--train-subset", "64", "--learning-rate", "0.002", "--weight-decay", "0", "--seed", "2", "--device",
            "cpu", "--quiet"]
    assert main([*argv, "--out", str(first)]) == 0
    config = json.loads((first / "config.json").read_text())
    assert (config["learning_rate"], config["weight_decay"], config["train_subset"]) == (0.002, 0.0, 64)
    assert main(["classify", "--config", str(first / "config.json"), "--out", str(second), "--quiet"]) == 0
    assert json.loads((second / "config.json").read_text()) == config
    first_metrics, second_metrics = (json.loads((run / "metrics.json").read_text()) for run in (first, second))
    assert first_metrics["test_accuracy"] == second_metrics["test_accuracy"]


def test_a_classify_record_gives_its_options_but_no_paths(tmp_path, parsed):
    record = {"dataset": "digits", "backbone": "convnet4", "method": "mn", "epochs": 3, "batch_size": 128,
              "learning_rate": 0.01, "dictionary_size": 100, "seed": 0, "device": "cpu", "data_dir": "/elsewhere",
              "cache_dir": "/cache", "model": {"num_classes": 10}, "version": "0.1.0"}
    config = _write(tmp_path / "config.json", json.dumps(record))
    args = parsed(["classify", "--config", config, "--out", "o"])
    assert (args.dataset, args.method, args.epochs, args.learning_rate, args.dictionary_size, args.device) == (
        "digits", "mn", 3, 0.01, 100, "cpu")
    assert args.data_dir is None and args.cache_dir is None
    assert args.batch_size is None and args.seed is None  # at their defaults: left to the defaults
    metrics = _write(tmp_path / "metrics.json", json.dumps({"test_accuracy": 0.5, "config": record}))
    assert parsed(["classify", "--config", metrics, "--out", "o"]).epochs == 3


def test_a_classify_rerun_names_the_folders_its_record_s_run_was_given(tmp_path, parsed, caplog):
    """A record never gives folders: a rerun without them looks where the defaults say, and a data set missing
    there was refused without naming where the run had found it."""
    import logging

    from meta_neighborhoods.commands.classify import _say_recorded_folders

    record = {"dataset": "digits", "backbone": "convnet4", "method": "vanilla", "data_dir": "/elsewhere",
              "cache_dir": "/cache", "version": "0.1.0"}
    metrics = _write(tmp_path / "metrics.json", json.dumps({"test_accuracy": 0.5, "config": record}))
    with caplog.at_level(logging.INFO, logger="meta_neighborhoods"):
        _say_recorded_folders(parsed(["classify", "--config", metrics, "--out", "o", "--cache-dir", "c"]))
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{metrics}: its run was given --data-dir /elsewhere, which a record never gives: give it again "
                    "to read there"]
    link = tmp_path / "link.json"
    link.symlink_to(metrics)  # --config follows a link: so does what it says of the record (a review's refusal)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="meta_neighborhoods"):
        _say_recorded_folders(parsed(["classify", "--config", str(link), "--out", "o"]))
    assert [r.getMessage()[len(str(link)):] for r in caplog.records] == [
        ": its run was given --data-dir /elsewhere, which a record never gives: give it again to read there",
        ": its run was given --cache-dir /cache, which a record never gives: give it again to read there"]


def test_a_spiral_run_repeats_from_its_metrics_json(tmp_path, parsed):
    record = {"test_accuracy": {}, "config": {"seed": 4, "epochs": 9, "batch_size": 256, "n_per_class": 800,
                                             "animation": False, "dictionary_size": 100}}
    config = _write(tmp_path / "metrics.json", json.dumps(record))
    args = parsed(["spiral", "--config", config, "--out", "o"])
    assert (args.seed, args.epochs, args.no_animation) == (4, 9, True)


def test_a_spiral_or_classify_record_of_fixed_settings_other_than_today_s_is_refused(tmp_path, parsed, capsys):
    """Settings no option sets, recorded at other values than the code's now (an edited record, or one of an older
    version), are refused: a rerun would train otherwise, silently. One the record lacks is one added since."""
    from meta_neighborhoods.config import GRAD_CLIP, SPIRAL_METHOD
    from meta_neighborhoods.experiments.classification import fixed_choices
    from meta_neighborhoods.image_methods import IMAGE_CONFIG

    spiral = {"test_accuracy": {}, "config": {"seed": 4, "epochs": 9, "n_per_class": 800, "noise": 0.5,
                                              "temperature": SPIRAL_METHOD.temperature}}
    path = _write(tmp_path / "metrics.json", json.dumps(spiral))
    assert parsed(["spiral", "--config", path, "--out", "o"]).epochs == 9
    spiral["config"].update(noise=0.25, temperature=1.0)
    _write(tmp_path / "metrics.json", json.dumps(spiral))
    _refused(capsys, ["spiral", "--config", path, "--out", "o"], f"{path}: its run trained with noise 0.25 (now 0.5), "
             f"temperature 1.0 (now {SPIRAL_METHOD.temperature}), which no option sets: a rerun here would train "
             "otherwise")
    record = {"dataset": "digits", "backbone": "convnet4", "method": "vanilla", "epochs": 3, "optimizer": "AdamW",
              "grad_clip_value": GRAD_CLIP, "ifilm_where": "a method that does not use it", "version": "0.1.0"}
    path = _write(tmp_path / "config.json", json.dumps(record))
    assert parsed(["classify", "--config", path, "--out", "o"]).epochs == 3  # vanilla: iFiLM's is not its setting
    record.update(method="vanilla_ifilm")
    _write(tmp_path / "config.json", json.dumps(record))
    _refused(capsys, ["classify", "--config", path, "--out", "o"],
             f"{path}: its run trained with ifilm_where 'a method", "the code that made it (version 0.1.0)")
    for wrong in ({"v": GRAD_CLIP}, None, [GRAD_CLIP]):  # another type is another value, never one added since
        _write(tmp_path / "config.json", json.dumps({**record, "method": "vanilla", "grad_clip_value": wrong}))
        _refused(capsys, ["classify", "--config", path, "--out", "o"], f"grad_clip_value {wrong!r} (now {GRAD_CLIP!r})")
    for wrong in ("x", None, [1]):
        _write(tmp_path / "config.json", json.dumps({**record, "method": "mn", "meta_neighborhoods": wrong}))
        _refused(capsys, ["classify", "--config", path, "--out", "o"], f"meta_neighborhoods {wrong!r} (now {{")
    _write(tmp_path / "config.json", json.dumps({**record, "method": "mn", "meta_neighborhoods": 1, "version": "1\n2"}))
    assert "version" not in _refused(capsys, ["classify", "--config", path, "--out", "o"], "the code that made it")
    record.update(method="all", grad_clip_value=GRAD_CLIP * 2, meta_neighborhoods={"temperature": -1})
    del record["ifilm_where"]  # a choice the record lacks: one added since
    _write(tmp_path / "config.json", json.dumps(record))
    _refused(capsys, ["classify", "--config", path, "--out", "o"],
             f"its run trained with meta_neighborhoods.temperature -1 (now {IMAGE_CONFIG.temperature!r}), "
             f"grad_clip_value {GRAD_CLIP * 2!r} (now {GRAD_CLIP!r})")
    group = {**fixed_choices("mn")["meta_neighborhoods"], "sharpen": 2}
    record.update(grad_clip_value=GRAD_CLIP, meta_neighborhoods=group)
    _write(tmp_path / "config.json", json.dumps(record))  # a later version's setting: a rerun would train without it
    _refused(capsys, ["classify", "--config", path, "--out", "o"],
             "its run trained with meta_neighborhoods.sharpen 2 (no such setting now), which no option sets")


def test_a_regress_run_repeats_from_its_results_json_with_its_new_settings(tmp_path, parsed, monkeypatch):
    from meta_neighborhoods.experiments import table_runs

    mlps = {name: method for name, method in table_runs.available_methods().items()
            if name in ("vanilla", "meta_neighborhoods")}
    monkeypatch.setattr(table_runs, "available_methods",
                        lambda task="regression": mlps)  # the methods the settings reach
    argv = ["regress", "--dataset", "gom", "--max-rows", "60", "--folds", "2", "--seeds", "1", "--max-epochs", "2",
            "--learning-rate", "0.01", "--batch-size", "16", "--top-k", "4", "--slot-draw", "batch", "--device", "cpu",
            "--refine-factor", "0.5", "--quiet"]
    threads = torch.get_num_threads()
    run_threads = 1 if threads != 1 else 2  # not the process's own, so that the run's count shows
    assert main([*argv, "--threads", str(run_threads), "--out", str(tmp_path / "run")]) == 0
    assert torch.get_num_threads() == threads  # restored after the run
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    assert saved["threads"] == saved["provenance"]["threads"] == run_threads  # the setting, and what ran
    assert saved["estimator_params"] == {"device": "cpu", "max_epochs": 2, "learning_rate": 0.01, "batch_size": 16,
                                         "top_k": 4, "slot_draw": "batch", "refine_factor": 0.5}
    assert [saved["estimator"][name] for name in ("learning_rate", "batch_size", "slot_draw", "refine_factor")] == [
        0.01, 16, "batch", 0.5]
    args = parsed(["regress", "--config", str(tmp_path / "run" / "results.json"), "--out", "again"])
    assert (args.dataset, args.max_rows, args.folds, args.seeds, args.max_epochs, args.learning_rate, args.batch_size,
            args.top_k, args.slot_draw, args.refine_factor, args.device, args.search, args.threads) == (
        "gom", 60, 2, 1, 2, 0.01, 16, 4, "batch", 0.5, "cpu", False, run_threads)


def test_a_record_of_settings_that_defaults_have_since_changed_reruns_them_or_is_refused(tmp_path, parsed, capsys):
    """A record of an earlier version reran with today's defaults, silently (yacht: MN 0.32 -> 0.55): the settings
    its run took by default are given again where an option carries them, and refused where none does."""
    from dataclasses import asdict

    from meta_neighborhoods.config import ESTIMATOR

    estimator = {**json.loads(json.dumps(asdict(ESTIMATOR))), "top_k": 32, "random_state": 0, "device": "auto"}
    record = {"dataset": "gom", "config": {"folds": 5, "seed": 0, "seeds": 1, "estimator_params": {"device": "cpu"},
                                           "estimator": estimator, "provenance": {"git_commit": "748d150"}}}
    path = _write(tmp_path / "results.json", json.dumps(record))
    args = parsed(["regress", "--config", path, "--out", "again"])
    assert (args.top_k, args.max_epochs, args.device) == (32, ESTIMATOR.max_epochs, "cpu")
    del estimator["ema_decay"]
    estimator["adapt"] = "all"
    _write(tmp_path / "results.json", json.dumps(record))
    _refused(capsys, ["regress", "--config", path, "--out", "again"],
             f"{path}: its run trained with adapt 'all' (now 'last'), ema_decay unset (now 0.99), which no option sets: "
             "a rerun here would train otherwise; rerun it with the code that made it (commit 748d150)")
    estimator.update(adapt="last", ema_decay=0.99, vanilla_fallback="yes")  # the record's values are checked too
    _write(tmp_path / "results.json", json.dumps(record))
    _refused(capsys, ["regress", "--config", path, "--out", "again"],
             f"{path}: its estimator settings give vanilla_fallback = 'yes', not true or false")
    record["config"]["estimator"] = "damaged"
    _write(tmp_path / "results.json", json.dumps(record))
    _refused(capsys, ["regress", "--config", path, "--out", "again"],
             f"{path}: its estimator settings should be a JSON object, got str")


def _csv(path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(40, 3))
    np.savetxt(path, rows, delimiter=",", header="a,b,y", comments="")
    return str(path)


def test_a_run_without_the_fallback_repeats_from_its_record_and_only_on_its_own_table(tmp_path, parsed, capsys,
                                                                                       monkeypatch, user_folder):
    """MN alone (--no-vanilla-fallback) is the paper's method: its record repeats it; and a record names its table
    by digest, so that a file of another table under the same name (or a registered one) is refused."""
    from meta_neighborhoods.experiments import table_runs

    mlps = {name: method for name, method in table_runs.available_methods().items()
            if name in ("vanilla", "meta_neighborhoods")}
    monkeypatch.setattr(table_runs, "available_methods", lambda task="regression": mlps)
    data = tmp_path / "data"
    data.mkdir()
    argv = ["regress", "--data-file", _csv(data / "yacht.csv", 0), "--target", "y", "--folds", "2", "--seeds", "1",
            "--max-epochs", "2", "--no-vanilla-fallback", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    record = str(tmp_path / "run" / "results.json")
    saved = json.loads(Path(record).read_text())
    assert saved["config"]["estimator_params"]["vanilla_fallback"] is False
    assert "without the vanilla fallback (MN alone" in (tmp_path / "run" / "results.md").read_text()
    args = parsed(["regress", "--config", record, "--data-file", str(data / "yacht.csv"), "--out", "again"])
    assert args.vanilla_fallback is False and args.table_sha256 == saved["config"]["table_sha256"]
    assert args.target == "y" and args.dataset is None  # the CSV's column is recorded; the file is given again
    monkeypatch.undo()
    _csv(data / "yacht.csv", 1)  # other numbers under the same name
    again = ["regress", "--config", record, "--data-file", str(data / "yacht.csv"), "--target", "y", "--out"]
    _refused(capsys, [*again, str(other := user_folder("other"))], "results.json: yacht",
             "other numbers; --table-sha256 none")
    # the stem names a registered table, yacht, but the record is of a CSV file: it is not rerun on the registered one
    assert main(["regress", "--config", record, "--out", str(tmp_path / "registered")]) == 2
    assert ("whose path a rerun never takes from a record (it describes the table only): give the file again with "
            "--data-file") in capsys.readouterr().err
    assert not any(other.iterdir()) and not (tmp_path / "registered").exists()
    monkeypatch.setattr(table_runs, "available_methods", lambda task="regression": mlps)
    assert main([*again, str(tmp_path / "waived"), "--table-sha256", "none", "--quiet"]) == 0  # the line wins
    capsys.readouterr()
    _refused(capsys, ["regress", "--dataset", "gom", "--table-sha256", "abc", "--out", "x"], "64 hexadecimal")
    _refused(capsys, ["regress", "--dataset", "all", "--table-sha256", "0" * 64, "--out", "x"], "not those of")
    args = parsed(["regress", "--config", record, "--dataset", "all", "--out", "again"])  # a record's binds no 'all'
    assert args.dataset == "all"



@pytest.mark.parametrize("where", ["config", "provenance"])  # provenance: records from before threads was a setting
@pytest.mark.parametrize("threads, parts", [("x", ("results.json", "threads")),  # torch would crash on 100000:
                                           (100000, ("results.json: --threads must be at most 1024",))])
def test_a_record_whose_thread_count_is_not_a_count_is_refused(tmp_path, capsys, user_folder, threads, parts,
                                                              where):
    config = {"folds": 2, "seeds": 1, "estimator_params": {}}
    config.update({"threads": threads} if where == "config" else {"provenance": {"threads": threads}})
    config = _write(tmp_path / "results.json", json.dumps({"dataset": "gom", "config": config}))
    _refused(capsys, ["regress", "--config", config, "--out", str(out := user_folder("o"))], *parts)
    assert not any(out.iterdir())


def test_an_old_record_reruns_on_the_thread_count_its_provenance_gives(tmp_path, parsed):
    record = {"dataset": "gom",
              "config": {"folds": 2, "seeds": 1, "estimator_params": {}, "provenance": {"threads": 3}}}
    config = _write(tmp_path / "results.json", json.dumps(record))
    assert parsed(["regress", "--config", config, "--out", "o"]).threads == 3
    record["config"]["threads"] = 1  # the setting wins over what the provenance saw
    (tmp_path / "new").mkdir()
    config = _write(tmp_path / "new" / "results.json", json.dumps(record))
    assert parsed(["regress", "--config", config, "--out", "o"]).threads == 1


@pytest.mark.parametrize("command, line", [("spiral", "overwrite = true"), ("classify", "overwrite = true"),
                                           ("classify", 'resume = "runs/x"'), ("regress", "overwrite = true")])
def test_replacing_or_continuing_a_run_is_asked_on_the_command_line_never_by_a_file(tmp_path, capsys, command, line):
    """A file that set overwrite and out replaced an earlier run without the user asking."""
    (tmp_path / "o").mkdir()
    earlier = Path(_write(tmp_path / "o" / "metrics.json", "{}"))
    config = _write(tmp_path / "options.toml", f'{line}\nout = "{tmp_path / "o"}"\n')
    _refused(capsys, [command, "--config", config], f"{config}: ", "is asked on the command line only")
    assert earlier.read_text() == "{}"


def test_a_file_may_say_overwrite_false_which_asks_for_nothing(tmp_path, parsed):
    config = _write(tmp_path / "c.toml", 'dataset = "gom"\nout = "x"\noverwrite = false\n')
    args = parsed(["regress", "--config", config])
    assert not args.overwrite and args.out == "x"


@pytest.mark.parametrize("setting", ["out", "overwrite", "data_file", "data_dir"])
def test_a_record_gives_settings_never_paths_or_overwrite(tmp_path, capsys, setting):
    record = {"dataset": "gom", "config": {"folds": 2, "seeds": 1, "estimator_params": {setting: "x"}}}
    config = _write(tmp_path / "results.json", json.dumps(record))
    _refused(capsys, ["regress", "--config", config, "--out", str(tmp_path / "o")],
             f"results.json: its estimator_params hold settings no run records ({setting})")


@pytest.mark.parametrize("setting", ["head", "extractor"])
def test_a_record_of_a_run_given_a_factory_is_refused_naming_it(tmp_path, capsys, setting):
    record = {"dataset": "gom", "config": {"folds": 2, "seeds": 1,
                                           "estimator_params": {setting: "factory __main__.narrow"}}}
    config = _write(tmp_path / "results.json", json.dumps(record))
    _refused(capsys, ["regress", "--config", config, "--out", str(tmp_path / "o")],
             f"results.json: its run was given a {setting} factory (factory __main__.narrow), which a record cannot")


@pytest.mark.parametrize("line, message", [("seeds = 0", "--seeds must be a positive integer, got 0"),
                                           ("top-k = 0", "--top-k must be a positive integer"),
                                           ("slot_dropout = 1.5", "--slot-dropout must be in [0, 1)"),
                                           ("learning-rate = -1.0", "--learning-rate must be positive"),
                                           ("learning-rate = nan", "--learning-rate must be positive")])
def test_an_out_of_range_value_names_the_file_it_came_from_unless_the_command_line_gave_it(tmp_path, capsys,
                                                                                          user_folder, line, message):
    config = _write(tmp_path / "options.toml", f'dataset = "gom"\n{line}\n')
    out = user_folder("o")
    _refused(capsys, ["regress", "--config", config, "--out", str(out)], f"options.toml: {message}")
    option = "--" + line.split(" = ")[0].replace("_", "-")
    value = line.split(" = ")[1]
    config = _write(tmp_path / "fine.toml", 'dataset = "gom"\n')
    error = _refused(capsys, ["regress", "--config", config, option, value, "--out", str(out)], message)
    assert "fine.toml" not in error
    assert not any(out.iterdir())


def test_a_misspelt_name_checked_at_run_time_names_the_file(tmp_path, capsys, user_folder):
    config = _write(tmp_path / "c.toml",
                    f'dataset = "mnist"\nmethod = "mn"\nbackbone = "conv4"\nout = "{user_folder("o")}"\n')
    _refused(capsys, ["classify", "--config", config], "c.toml: unknown backbone 'conv4'; choose one of convnet4")
    assert not any((tmp_path / "o").iterdir())


def test_an_ablation_record_gives_its_parameter_and_values(tmp_path, parsed, capsys):
    from dataclasses import asdict

    from meta_neighborhoods.config import ESTIMATOR

    record = {"dataset": "gom", "param": "top_k", "values": [None, 4],
              "config": {"folds": 2, "seed": 1, "seeds": 1, "max_rows": 60, "estimator_params": {"device": "cpu"}}}
    config = _write(tmp_path / "ablation.json", json.dumps(record))
    args = parsed(["ablate", "--config", config, "--out", "o"])
    assert (args.dataset, args.param, args.values, args.folds, args.seed) == ("gom", "top_k", ["none", "4"], 2, 1)
    _refused(capsys, ["regress", "--config", config, "--out", "o"], "the ablation.json of an ablate run")
    estimator = json.loads(json.dumps(asdict(ESTIMATOR)))  # a record of every setting: its param is set aside
    _write(tmp_path / "ablation.json", json.dumps({**record, "param": [1], "config": {**record["config"],
                                                                                      "estimator": estimator}}))
    _refused(capsys, ["ablate", "--config", config, "--out", "o"], "param must be a string, got [1]")


SMALL = {"folds": 2, "seed": 1, "seeds": 1, "max_rows": 60, "estimator_params": {"device": "cpu"}}


@pytest.mark.parametrize("name, record, message", [
    ("results.json", {"dataset": "gom", "config": {**SMALL, "folds": 1}},
     "cross-validation needs at least 2 folds, got 1"),
    ("ablation.json", {"dataset": "gom", "param": "temperature", "values": [-1.0, 1.0], "config": SMALL},
     "temperature must be positive, got -1.0"),
    ("ablation.json", {"dataset": "gom", "param": "top_k", "values": [1e300], "config": SMALL},
     "top_k values must be of type int, got '1e+300'"),
    ("ablation.json", {"dataset": "gom", "param": "top_k", "values": [4, 4], "config": SMALL}, "top_k values repeat"),
])
def test_a_record_s_value_refused_when_the_run_starts_names_the_record(tmp_path, capsys, user_folder, name, record,
                                                                       message):
    config = _write(tmp_path / name, json.dumps(record))
    command = "ablate" if "param" in record else "regress"
    _refused(capsys, [command, "--config", config, "--out", str(out := user_folder("o"))], f"{name}: {message}")
    assert not any(out.iterdir())


def test_a_record_of_another_command_or_for_a_command_without_records_is_refused(tmp_path, capsys):
    spiral = _write(tmp_path / "metrics.json", json.dumps({"config": {"seed": 0, "n_per_class": 800}}))
    _refused(capsys, ["classify", "--config", spiral], "not the config.json, metrics.json or comparison.json of a "
                                                       "classify run")
    _refused(capsys, ["regress", "--config", spiral], "not the results.json or ablation.json of a regress or "
                                                      "ablate run")
    _refused(capsys, ["analyze", "--config", spiral], f"{spiral}: the record of a run, which this command cannot read")
    bad = _write(tmp_path / "bad.json", json.dumps({"config": {"n_per_class": 800, "animation": "no"}}))
    _refused(capsys, ["spiral", "--config", bad], f"{bad}: animation must be true or false, got 'no'")


@pytest.mark.parametrize("command, records", [("spiral", "(metrics.json)"), ("regress", "(results.json or summary.json)"),
                                              ("ablate", "(ablation.json)"),
                                              ("classify", "(config.json or metrics.json or comparison.json)")])
def test_each_command_names_the_records_its_config_reads(capsys, command, records):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert records in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("name, text", [("twice.json", '{"seed": 1, "seed": 2}'), ("twice.yaml", "seed: 1\nseed: 2\n")])
def test_a_key_given_twice_is_refused_not_taken_last(tmp_path, capsys, name, text):
    if name.endswith("yaml"):
        pytest.importorskip("yaml")
    config = _write(tmp_path / name, text)
    _refused(capsys, ["spiral", "--config", config, "--out", str(tmp_path / "run")], "key 'seed' is given twice")


def test_a_csv_runs_target_column_and_encoding_do_not_follow_its_record_onto_a_registered_table():
    from argparse import Namespace

    from meta_neighborhoods.commands.common import UsageError
    from meta_neighborhoods.commands.table_source import check_target

    given = dict(data_file=None, target="y", encoding="latin-1", table_sha256=None, dataset="gom", data_dir=None)
    args = Namespace(**given, config_gave={"target": "results.json", "encoding": "results.json"})
    check_target(args)  # the record gave them: the command line's --dataset wins
    assert args.target is None and args.encoding is None
    with pytest.raises(UsageError, match="--target only applies to --data-file"):
        check_target(Namespace(**given))  # typed by the user: said, not ignored
    with pytest.raises(UsageError, match="--encoding only applies to --data-file"):
        check_target(Namespace(**given, config_gave={"target": "results.json"}))


def test_a_file_not_in_the_encoding_a_record_gave_says_so_and_that_encoding_overrides_it(tmp_path):
    from argparse import Namespace

    from meta_neighborhoods.commands.table_source import load_table_source
    from meta_neighborhoods.datasets.text_tables import NotInEncoding

    path = tmp_path / "prices.csv"
    path.write_bytes("a,y\n1,2\n3,4\n".encode("utf-16-le"))
    given = dict(data_file=path, target="y", encoding="utf-16", separator=None, table_sha256=None, dataset=None,
                 data_dir=None)
    with pytest.raises(NotInEncoding, match=r"not a text table in the encoding 'utf-16' .*\(encoding 'utf-16' from results.json; "
                                            r"--encoding overrides it\)$"):
        load_table_source(Namespace(**given, config_gave={"encoding": "results.json"}))
    with pytest.raises(NotInEncoding, match=r"with --encoding: utf-16, latin-1, ...\)\?$"):
        load_table_source(Namespace(**given))


def test_a_classify_record_s_settings_its_method_does_not_use_are_not_taken():
    from meta_neighborhoods.commands.classify import options_from_record

    record = {"dataset": "digits", "backbone": "convnet4", "method": "vanilla", "epochs": 3,
              "dictionary_size": 50, "psi": 3}  # an older version recorded them for every method
    options = options_from_record(record)
    assert options["epochs"] == 3 and "dictionary_size" not in options and "psi" not in options


@pytest.mark.parametrize("method, dropped", [("vanilla", "dictionary_size"), ("maxl", "dictionary_size"),
                                             ("mn", "psi")])
def test_a_record_reruns_as_another_method_without_the_settings_that_method_does_not_use(tmp_path, monkeypatch,
                                                                                       method, dropped):
    """A record gives its own method's settings (an mn run's dictionary size, a maxl run's psi); the command line's
    --method wins, and what that method does not use is left out rather than refused. A file that also chose the
    method gave a setting for another method by mistake: refused."""
    from meta_neighborhoods.experiments import classification

    record = {"dataset": "digits", "backbone": "convnet4", "method": "mn" if dropped == "dictionary_size" else "maxl",
              "epochs": 3, "dictionary_size": 100, "psi": 3, "version": "0.1.0"}
    config = _write(tmp_path / "config.json", json.dumps(record))
    made = {}
    monkeypatch.setattr(classification, "run_classification", lambda *args, **kwargs: made.update(kwargs) or {})
    monkeypatch.setattr("meta_neighborhoods.commands.classify._report", lambda *args: None)
    assert main(["classify", "--config", config, "--method", method, "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert made["epochs"] == 3 and dropped not in made
    monkeypatch.undo()
    mistaken = _write(tmp_path / "mine.toml", f'dataset = "digits"\nbackbone = "convnet4"\nmethod = "{method}"\n'
                                              f'{dropped.replace("_", "-")} = 7\n')
    assert main(["classify", "--config", mistaken, "--out", str(tmp_path / "p"), "--quiet"]) == 2


def _estimator_record(**changes) -> dict:
    """The full estimator settings a run records (today's defaults), with ``changes``."""
    from dataclasses import asdict

    from meta_neighborhoods.config import ESTIMATOR

    return {**json.loads(json.dumps(asdict(ESTIMATOR))), "random_state": 1, "device": "cpu", **changes}


@pytest.mark.parametrize("param", ["top_k", "inner_steps"])  # one with an option of its own, one without
def test_an_ablation_record_with_its_estimator_settings_reruns(tmp_path, parsed, param):
    """An ablation records its parameter as 'ablated, see values' and vanilla_fallback False: neither is a default
    that changed since, nor a setting to give as an option (ablate refuses --top-k beside --param top_k)."""
    estimator = _estimator_record(vanilla_fallback=False, **{param: "ablated, see values"})
    record = {"dataset": "gom", "param": param, "values": [1, 2], "config": {**SMALL, "estimator": estimator}}
    config = _write(tmp_path / "ablation.json", json.dumps(record))
    args = parsed(["ablate", "--config", config, "--out", "o"])
    assert (args.param, args.values) == (param, ["1", "2"])
    assert args.top_k == (None if param == "top_k" else estimator["top_k"])


def test_a_search_record_with_its_estimator_settings_reruns(tmp_path, parsed):
    """A --search run records hidden_layer_sizes as 'searched per fold': not a default that changed."""
    estimator = _estimator_record(hidden_layer_sizes="searched per fold, see architectures")
    record = {"dataset": "gom", "config": {**SMALL, "search": True, "estimator": estimator}}
    config = _write(tmp_path / "results.json", json.dumps(record))
    args = parsed(["regress", "--config", config, "--out", "o"])
    assert (args.dataset, args.search, args.folds) == ("gom", True, 2)
