"""The command line: one module per command, shared options, and the exit status of each kind of error."""

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meta_neighborhoods.cli import build_parser, main
from meta_neighborhoods.commands import COMMANDS
from meta_neighborhoods.io import RunFolderError
from meta_neighborhoods.validation import ConfigError

NAMES = ["spiral", "regress", "ablate", "fit", "predict", "classify", "analyze", "export"]
TRAINING = ["spiral", "regress", "ablate", "classify"]


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _spiral_raising(monkeypatch, error, tmp_path):
    """Run ``spiral`` with its experiment replaced by one that raises ``error``; return the exit status."""
    def run_spiral(*args, **kwargs):
        raise error

    monkeypatch.setattr("meta_neighborhoods.experiments.spiral.run_spiral", run_spiral)  # imports torch: not above
    return main(["spiral", "--out", str(tmp_path / "run"), "--quiet"])


def test_every_command_module_registers_itself_and_runs():
    assert [command.__name__.rsplit(".", 1)[-1] for command in COMMANDS] == NAMES
    for command in COMMANDS:
        assert callable(command.add_parser) and callable(command.run)
    for name in NAMES:
        argv = {"regress": ["--dataset", "gom"], "ablate": ["--dataset", "gom", "--param", "top_k", "--values", "1"],
                "analyze": ["--run", "r", "--what", "all"], "export": ["--run", "r"], "fit": ["--dataset", "gom"],
                "predict": ["--model", "m", "--data-file", "f.csv"]}.get(name, [])
        args = build_parser().parse_args([name, *argv, "--out", "o"])
        assert args.command == name and args.run.__module__ == f"meta_neighborhoods.commands.{name}"


def test_help_lists_every_command(capsys):
    text = _help(capsys)
    for name in NAMES:
        assert f"    {name} " in text


def test_help_imports_neither_torch_nor_sklearn_nor_pandas_nor_the_experiments():
    code = ("import sys; from meta_neighborhoods.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'pandas') "
            "or m.startswith('meta_neighborhoods.experiments')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "meta_neighborhoods", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and all(name in done.stdout for name in NAMES)


@pytest.mark.parametrize("argv, status", [
    (["spiral", "--out", "{tmp}/o", "--epochs", "0"], 2),  # a usage error
    (["analyze", "--run", "{tmp}/nope", "--what", "cosine", "--quiet"], 1),  # a failure at run time
])
def test_the_process_exits_with_the_status_and_the_one_line_main_gives(tmp_path, argv, status):
    done = subprocess.run([sys.executable, "-m", "meta_neighborhoods", *[a.format(tmp=tmp_path) for a in argv]],
                          capture_output=True, text=True)
    assert done.returncode == status and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("name", TRAINING)
def test_training_commands_share_out_seed_device_quiet(capsys, name):
    text = _help(capsys, name)
    for option in ("--out", "--seed SEED", "--device {auto,cpu,cuda}", "--quiet"):
        assert option in text


@pytest.mark.parametrize("name", ["regress", "ablate"])
def test_regress_and_ablate_share_the_table_source(capsys, name):
    text = _help(capsys, name)
    for option in ("--dataset NAME", "--data-file PATH", "--target COLUMN", "--encoding NAME", "--data-dir PATH",
                   "--folds FOLDS"):
        assert option in text
    assert ("all = every regression table whose files are present" in " ".join(text.split())) == (name == "regress")


def test_each_command_keeps_its_own_defaults():
    parse = build_parser().parse_args
    classify = parse(["classify"])
    assert classify.seed is None and classify.device is None  # not given: --resume can refuse or inherit them
    analyze = parse(["analyze", "--run", "r", "--what", "all"])
    assert (analyze.seed, analyze.device, analyze.out, analyze.data_dir, analyze.cache_dir) == (0, "auto", None,
                                                                                                 None, None)
    spiral = parse(["spiral", "--out", "o"])
    assert (spiral.seed, spiral.device, spiral.quiet, spiral.epochs) == (0, "auto", False, 300)


def test_image_commands_share_the_data_folders(capsys):
    assert "--data-dir PATH" in _help(capsys, "classify") and "--cache-dir PATH" in _help(capsys, "classify")
    text = _help(capsys, "analyze")
    assert "--data-dir PATH" in text and "--cache-dir PATH" in text
    assert "never a path stored in a run folder" in " ".join(text.split())


@pytest.mark.parametrize("argv, message", [
    (["spiral", "--out", "o", "--device", "tpu"], "meta-neighborhoods spiral: error: argument --device: invalid "
                                                 "choice: 'tpu'"),
    (["classify", "--epochs", "x"], "meta-neighborhoods classify: error: argument --epochs: invalid int value: 'x'"),
    (["analyze", "--what", "bogus"], "meta-neighborhoods analyze: error: argument --what: invalid choice"),
    (["nocommand"], "meta-neighborhoods: error: argument COMMAND: invalid choice: 'nocommand'"),
])
def test_an_argparse_error_exits_2_with_one_line(capsys, argv, message):
    """As every other error of the command line: one line, not the usage block before it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith(message) and error.count("\n") == 1
    assert error.endswith(f"(see {message.split(': error')[0]} --help)\n")


@pytest.mark.parametrize("argv, message", [
    (["classify", "--dataset", "digits", "--quiet"], "classify needs --backbone, --method, --out"),
    (["classify", "--resume", "r", "--seed", "1"],
     "--resume continues a run with its saved configuration; drop --seed"),
    (["regress", "--dataset", "gom", "--target", "y", "--out", "o"], "--target only applies to --data-file"),
    (["fit", "--data-file", "t.csv", "--target", "y", "--data-dir", ".", "--out", "o"],
     "--data-dir only applies to --dataset"),  # was: silently unused
    (["regress", "--dataset", "gom", "--dictionary-size", "0", "--out", "o"], "dictionary_size=0 is the vanilla "
                                                                               "network"),  # compared with itself
    (["regress", "--dataset", "gom", "--seed", "4294967295", "--seeds", "2", "--out", "o"],
     "seeds must be at most 1 from seed 4294967295"),
    (["regress", "--dataset", "gom", "--seeds", "99999999999999999999", "--out", "o"],  # was: "from 0 to -9999..."
     "--seeds must be at most 4294967296, got 99999999999999999999"),
    (["analyze", "--run", "r", "--what", "tsne", "--seed", "-1"], "seed must be an integer from 0 to 4294967295"),
    (["ablate", "--data-file", "t.csv", "--param", "top_k", "--values", "1", "--out", "o"], "--data-file needs --target"),
    (["regress", "--dataset", "gom", "--encoding", "latin-1", "--out", "o"], "--encoding only applies to --data-file"),
    (["ablate", "--data-file", "t.csv", "--target", "y", "--encoding", "latin-42", "--param", "top_k", "--values", "4",
      "--out", "o"], "--encoding must be a text encoding Python knows (utf-8, utf-16, latin-1, cp1252, ...), got "
                     "'latin-42'"),  # before the file is read, or a folder claimed
    (["spiral", "--threads", "0", "--out", "o"], "--threads must be a positive integer, got 0"),
    (["regress", "--data-file", "t.csv", "--target", "y", "--encoding", "", "--out", "o"],
     "--encoding must be a text encoding Python knows (utf-8, utf-16, latin-1, cp1252, ...), got ''"),  # not UTF-8
    *[(argv, "--data-dir /no/such/folder is not a folder") for argv in (  # not the shipped copy (gom, digits),
        ["regress", "--dataset", "gom", "--data-dir", "/no/such/folder", "--out", "o"],  # nor --dataset all's two
        ["regress", "--dataset", "all", "--data-dir", "/no/such/folder", "--out", "o"],
        ["ablate", "--dataset", "gom", "--data-dir", "/no/such/folder", "--param", "top_k", "--values", "4", "--out",
         "o"],
        ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn", "--data-dir",
         "/no/such/folder", "--out", "o"],
        ["classify", "--resume", "r", "--data-dir", "/no/such/folder"],
        ["analyze", "--run", "r", "--what", "cosine", "--data-dir", "/no/such/folder"])],
])
def test_a_usage_error_exits_2_with_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)  # were it not refused, a run's relative --out lands here, not in the checkout
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"meta-neighborhoods {argv[0]}: error: ") and message in error
    assert error.count("\n") == 1


def test_a_config_error_exits_2_and_other_value_errors_exit_1(monkeypatch, tmp_path, capsys):
    from meta_neighborhoods.checkpoint import CheckpointError

    assert _spiral_raising(monkeypatch, ConfigError("epochs must be a positive integer, got 0"), tmp_path) == 2
    assert capsys.readouterr().err == "meta-neighborhoods spiral: error: epochs must be a positive integer, got 0\n"
    assert _spiral_raising(monkeypatch, ValueError("the loss is not finite"), tmp_path) == 1
    assert capsys.readouterr().err == "meta-neighborhoods spiral: error: the loss is not finite\n"
    assert _spiral_raising(monkeypatch, CheckpointError("checkpoint damaged"), tmp_path) == 1
    assert capsys.readouterr().err == "meta-neighborhoods spiral: error: checkpoint damaged\n"
    assert _spiral_raising(monkeypatch, FloatingPointError("overflow"), tmp_path) == 1


def test_an_unwritable_output_folder_exits_1(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["spiral", "--out", str(tmp_path / "file" / "run"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("meta-neighborhoods spiral: error: cannot write to output directory")
    assert error.count("\n") == 1


def test_a_missing_run_folder_exits_1(tmp_path, capsys):
    assert main(["analyze", "--run", str(tmp_path / "nope"), "--what", "cosine", "--quiet"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("meta-neighborhoods analyze: error: ") and "does not exist" in error
    assert error.count("\n") == 1


BIG, HUGE = 10**400, int("f" * 5000, 16)  # past float's range (JSON holds it); past repr's 4,300 digits (TOML)


def _classify_run(run, config: dict | None = None, **files) -> list[str]:
    """A digits run folder as classify leaves it, untrained, with ``config``'s fields and ``files`` (name: JSON)
    changed; its ``export`` and ``analyze --what cosine`` command lines."""
    import json

    from meta_neighborhoods import image_methods, runs
    from meta_neighborhoods.config import ClassificationConfig
    from meta_neighborhoods.run_record import image_inputs, write_run_record

    run.mkdir()
    args = {"method": "mn", "backbone": "convnet4", "in_channels": 1, "num_classes": 10, "dictionary_size": 8}
    image_methods.save_checkpoint(run / "best", image_methods.build_model(**args), model_args=args, epoch=1)
    saved = {**vars(ClassificationConfig("digits", "convnet4", "mn", epochs=1)), "model": args, **(config or {})}
    (run / "config.json").write_text(json.dumps(saved))
    write_run_record(run, {"classes": list("0123456789"), "input": image_inputs((1, 1, 8, 8), [0.5], [0.25])})
    runs.write_split(run, runs.Split(np.arange(5), np.arange(5, 8), (0.5,), (0.25,)))
    for name, change in files.items():
        (run / name).write_text(json.dumps(change(json.loads((run / name).read_text()))))
    return [["export", "--run", str(run), "--out", str(run.parent / "m.onnx")],
            ["analyze", "--run", str(run), "--what", "cosine", "--device", "cpu", "--quiet"]]


def _with_config(tmp_path, name: str, text: str) -> list[str]:
    (tmp_path / name).write_text(text)
    return ["regress", "--dataset", "gom", "--out", str(tmp_path / "out"), "--config", str(tmp_path / name)]


@pytest.mark.parametrize("argv, status, message", [
    (lambda tmp: _classify_run(tmp / "run", **{"run.json": lambda r: {**r, "input": {**r["input"], "mean": [BIG]}}})[0],
     1, "run.json: input should give the layout NCHW, scale 255, positive channels, height and width, a finite "
        "mean"),
    (lambda tmp: _classify_run(tmp / "run", **{"split.json": lambda s: {**s, "mean": [BIG]}})[1],
     1, "split.json: mean and std should be equally long lists of finite numbers"),
    (lambda tmp: _with_config(tmp, "c.json", f'{{"learning-rate": {BIG}}}'),
     2, "c.json: learning-rate must be a finite number, got <an integer of about 401 digits>"),
    (lambda tmp: _with_config(tmp, "c.toml", f"max-epochs = {hex(HUGE)}"),
     2, "c.toml: --max-epochs must be at most 1000000000, got <an integer of about 6021 digits>"),
    (lambda tmp: [*_with_config(tmp, "c.toml", f"seeds = {hex(HUGE)}"), "-v"],
     2, "c.toml: --seeds must be at most 4294967296, got <an integer of about 6021 digits>"),
    (lambda tmp: _with_config(tmp, "c.toml", f"top-k = {hex(HUGE)}"),
     2, "c.toml: --top-k must be at most 9223372036854775807, got <an integer of about 6021 digits>"),
    (lambda tmp: _classify_run(tmp / "run", {"lr_drop_at": BIG})[1],
     1, "config.json: lr_drop_at must be in (0, 1], got <an integer of about 401 digits>"),
], ids=["export run.json", "analyze split.json", "json learning-rate", "toml max-epochs", "toml seeds -v",
        "toml top-k", "run config lr_drop_at"])
def test_an_integer_too_large_for_a_float_or_for_repr_is_refused_in_one_line(tmp_path, capsys, argv, status,
                                                                              message):
    """JSON holds integers of up to 4,300 digits, TOML's hex ones any: float() overflows on them, repr() and str()
    refuse the longest. A count is refused as out of range, a real number as not finite, a file's field as it is
    refused otherwise: in one line, the value shown cut short."""
    assert main(argv(tmp_path)) == status
    error = capsys.readouterr().err.splitlines()
    assert message in error[-1] and len(error[-1]) < 400 and "Traceback" not in error[0]
    assert len(error) == 1 or error[0].startswith("meta-neighborhoods regress: debug: options: ")


def test_an_interrupted_command_exits_130_with_one_line(monkeypatch, tmp_path, capsys):
    assert _spiral_raising(monkeypatch, KeyboardInterrupt(), tmp_path) == 130
    assert capsys.readouterr().err == "meta-neighborhoods spiral: interrupted\n"


@pytest.mark.parametrize("joined, error, status, line, held", [
    (False, None, 2, "classify: rank 1: error: argument --epochs: invalid int value: 'x'", True),  # argparse's
    (False, ValueError("the loss is not finite"), 1, "spiral: rank 1: error: the loss is not finite", True),
    (True, ConfigError("epochs must be a positive integer"), 2, "spiral: rank 1: error: epochs must be", True),
    (True, ValueError("the loss is not finite"), 1, "spiral: rank 1: error: the loss is not finite", False),
    (True, RunFolderError("last.json was written by a run of 1 process(es)"), 1, "spiral: rank 1: error: last.json",
     True),  # a file every rank reads: a trial read it twice
    (True, FloatingPointError("training loss became nan"), 1, "spiral: rank 1: error: training loss became nan",
     True),  # of weights the ranks average: a trial read it twice
    (True, KeyboardInterrupt("continue with ..."), 130, None, False),
], ids=["usage", "before joining", "usage after joining", "after joining", "a run file", "a NaN loss", "interrupt"])
def test_under_torchrun_another_rank_holds_an_error_rank_0_says_and_says_its_own_after_its_rank(
        monkeypatch, tmp_path, capsys, joined, error, status, line, held):
    """Every rank said each error: the user read one line once per process. A rank other than 0 holds a line that
    rank 0 most likely says (torchrun stops it meanwhile), says at once one that may be its own, and after its
    rank either way; an interrupt, which reaches every rank, only rank 0 says."""
    from types import SimpleNamespace

    from meta_neighborhoods import cli, distributed

    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "_joined", joined, raising=False)
    holds = []
    monkeypatch.setattr(cli, "time", SimpleNamespace(sleep=holds.append), raising=False)
    if error is None:
        with pytest.raises(SystemExit) as exit_info:
            main(["classify", "--epochs", "x"])
        assert exit_info.value.code == status
    else:
        assert _spiral_raising(monkeypatch, error, tmp_path) == status
    said = capsys.readouterr().err
    assert said == ("" if line is None else said.splitlines()[0] + "\n") and holds == ([cli.HOLD] if held else [])
    assert line is None or said.startswith(f"meta-neighborhoods {line}")
    monkeypatch.setenv("RANK", "0")  # rank 0 says every one at once, as outside torchrun
    assert _spiral_raising(monkeypatch, KeyboardInterrupt(), tmp_path) == 130 and holds == ([cli.HOLD] if held else [])
    assert capsys.readouterr().err == "meta-neighborhoods spiral: interrupted\n"


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_rank_0_alone_says_the_messages(monkeypatch, tmp_path, capsys, rank):
    """Warnings and -v's options line, which every rank meets alike: a trial read them once per process (MAXL's
    warning of a deprecated collective, even with --quiet)."""
    import warnings
    from types import SimpleNamespace

    from meta_neighborhoods import cli

    def run_spiral(*args, **kwargs):
        warnings.warn("a warning every rank meets")
        raise ValueError("stopped")

    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("meta_neighborhoods.experiments.spiral.run_spiral", run_spiral)
    monkeypatch.setattr(cli, "time", SimpleNamespace(sleep=lambda seconds: None), raising=False)
    assert main(["spiral", "--out", str(tmp_path / "run"), "-v"]) == 1
    said = capsys.readouterr().err.splitlines()
    assert said[-1].endswith("error: stopped") and len(said) == (3 if rank == "0" else 1)
    assert rank != "0" or "debug: options: " in said[0] and said[1].endswith("warning: a warning every rank meets")


@pytest.mark.parametrize("environment", [{"RANK": "1"}, {"RANK": "one", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}],
                         ids=["RANK alone", "RANK not a number"])
def test_a_rank_in_the_environment_that_is_not_torchruns_says_an_error_at_once(monkeypatch, tmp_path, capsys,
                                                                                  environment):
    from types import SimpleNamespace

    from meta_neighborhoods import cli

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    holds = []
    monkeypatch.setattr(cli, "time", SimpleNamespace(sleep=holds.append))
    assert _spiral_raising(monkeypatch, ConfigError("epochs must be a positive integer"), tmp_path) == 2
    assert capsys.readouterr().err.startswith("meta-neighborhoods spiral: error: epochs must be") and holds == []


# ---------------------------------------------------------------------------------------------------
# Messages: the package's loggers on stderr, results on stdout


def _spiral_done(monkeypatch, seen: dict):
    """Replace spiral's experiment by one that logs through the package's loggers and returns metrics."""
    def run_spiral(out, config, device, progress, overwrite):
        log = logging.getLogger("meta_neighborhoods.experiments.spiral")
        log.debug("a detail")
        log.info("training")
        log.warning("careful")
        seen["progress"] = progress
        return {"test_accuracy": {"vanilla": 0.5, "meta_neighborhoods": 0.75}, "seconds": 1.0, "files": ["spiral.png"]}

    monkeypatch.setattr("meta_neighborhoods.experiments.spiral.run_spiral", run_spiral)


OPTIONS = "debug: options: command='spiral', "
TRAINING, CAREFUL, WROTE = "training", "warning: careful", "wrote {out}/metrics.json, spiral.png"


@pytest.mark.parametrize("flags, lines, progress", [
    ([], [TRAINING, CAREFUL, WROTE], True),
    (["--quiet"], [CAREFUL], False),
    (["-v"], [OPTIONS, "debug: a detail", TRAINING, CAREFUL, WROTE], True),
])
def test_messages_go_to_stderr_at_the_level_of_quiet_or_verbose(monkeypatch, tmp_path, capsys, flags, lines,
                                                                progress):
    seen = {}
    _spiral_done(monkeypatch, seen)
    out = tmp_path / "run"
    assert main(["spiral", "--out", str(out), *flags]) == 0
    captured = capsys.readouterr()
    assert captured.out == "spiral test accuracy: vanilla 0.5000, meta-neighborhoods 0.7500 (1.0 s)\n"
    got = captured.err.splitlines()
    assert len(got) == len(lines), got
    for line, start in zip(got, lines):
        assert line.startswith("meta-neighborhoods spiral: " + start.format(out=out)), got
    assert seen["progress"] is progress


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--run", "r", "--out", "m.onnx", "--quiet", "--verbose"])
    assert exit_info.value.code == 2 and "not allowed with argument --quiet" in capsys.readouterr().err


def test_only_the_command_line_prints_and_configures_logging():
    root = Path(build_parser.__code__.co_filename).parent
    for path in root.rglob("*.py"):
        text, relative = path.read_text(), path.relative_to(root)
        if relative.parts[0] != "commands" and relative.name not in ("cli.py", "__main__.py"):
            assert "print(" not in text, f"{relative}: messages go through logging.getLogger(__name__), what a " \
                                         "user's verbose asks for through callbacks.report"
        if relative.name != "cli.py":
            assert not re.search(r"basicConfig|addHandler|getLogger\(\)", text), relative


# ---------------------------------------------------------------------------------------------------
# Training settings as flags


@pytest.mark.parametrize("argv, message", [
    (["--learning-rate", "0"], "--learning-rate must be positive, got 0.0"),
    (["--weight-decay", "-1"], "--weight-decay must be a non-negative number, got -1.0"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--dictionary-size", "-1"], "--dictionary-size must be a non-negative integer, got -1"),
    (["--top-k", "0"], "--top-k must be a positive integer (or 'none' for full attention)"),
    (["--slot-dropout", "1"], "--slot-dropout must be in [0, 1), got 1.0"),
    (["--refine-factor", "2"], "--refine-factor must be 'none' or a number in (0, 1), got 2.0"),
    (["--hidden-layer-sizes", "16", "0"], "--hidden-layer-sizes must be a positive integer or a sequence of them"),
])
def test_the_estimator_settings_are_checked_before_any_work(capsys, user_folder, argv, message):
    small = ["--max-rows", "40", "--folds", "2", "--seeds", "1", "--max-epochs", "1"]  # a missed check ends soon
    for command in (["regress"], ["ablate", "--param", "temperature", "--values", "1"]):
        out = user_folder(command[0])
        assert main([*command, "--dataset", "gom", "--out", str(out), *small, *argv]) == 2
        assert message in capsys.readouterr().err and not any(out.iterdir())


def test_the_network_s_head_and_widths_are_options_their_record_reruns(tmp_path, capsys):
    """--head periodic and --hidden-layer-sizes reach vanilla and MN alike, are recorded, and a --config rerun of
    the record gives the same errors; --search, which chooses the widths, refuses the option."""
    small = ["--dataset", "gom", "--max-rows", "60", "--folds", "2", "--seeds", "1", "--max-epochs", "2", "--quiet"]
    assert main(["regress", *small, "--head", "periodic", "--hidden-layer-sizes", "16", "8",
                 "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "results.json").read_text())
    assert record["config"]["estimator_params"]["head"] == record["config"]["estimator"]["head"] == "periodic"
    assert record["config"]["estimator"]["hidden_layer_sizes"] == [16, 8]
    assert main(["regress", "--config", str(tmp_path / "a" / "results.json"), "--out", str(tmp_path / "b"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["folds"] == record["folds"]
    assert main(["regress", *small, "--hidden-layer-sizes", "16", "8", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "results.json").read_text())["folds"] != record["folds"]  # the MLP's
    assert main(["regress", *small, "--search", "--hidden-layer-sizes", "16", "--out", str(tmp_path / "d")]) == 2
    assert "--search chooses the hidden layers per fold; drop --hidden-layer-sizes" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--top-k", "abc"], "argument --top-k: expected an integer or 'none', got 'abc'"),
    (["--refine-factor", "tenth"], "argument --refine-factor: expected a number or 'none', got 'tenth'"),
])
def test_an_option_of_a_number_or_none_says_what_it_takes_not_its_type_s_name(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        main(["regress", "--dataset", "gom", *argv])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_command_line_checks_the_training_settings_in_their_one_home(monkeypatch, capsys, user_folder):
    """regress's options go through the estimators' own check (``check_settings``), not a twin of it: a bound added
    there reaches the command line, spelt as the option."""
    from meta_neighborhoods import estimator_settings

    def bounded(estimator):
        if estimator.max_epochs > 7:
            raise ConfigError(f"max_epochs must be at most 7, got {estimator.max_epochs}", "max_epochs")

    monkeypatch.setattr(estimator_settings, "check_settings", bounded)
    out = user_folder("regress")
    assert main(["regress", "--dataset", "gom", "--out", str(out), "--max-rows", "40", "--folds", "2", "--seeds", "1",
                 "--max-epochs", "9"]) == 2
    assert "--max-epochs must be at most 7, got 9" in capsys.readouterr().err and not any(out.iterdir())


@pytest.mark.parametrize("command", ["regress", "ablate"])
def test_an_unknown_slot_draw_is_refused_by_the_parser(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--dataset", "gom", "--out", str(tmp_path / "o"), "--slot-draw", "column"])
    assert exit_info.value.code == 2 and "invalid choice: 'column'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_ablated_parameter_is_not_also_a_flag(capsys, user_folder):
    out = user_folder("a")
    argv = ["ablate", "--dataset", "gom", "--param", "top_k", "--values", "4", "8", "--top-k", "2", "--out", str(out)]
    assert main(argv) == 2
    assert "--param top_k is varied over --values; drop --top-k" in capsys.readouterr().err
    assert not any(out.iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--learning-rate", "-0.1"], "learning_rate must be positive, got -0.1"),
    (["--weight-decay", "-1"], "weight_decay must be a non-negative number, got -1.0"),
    (["--dictionary-size", "5"], "--dictionary-size (dictionary_size, induced neighbours) applies to --method mn, "
                                 "mn_ifilm or all, not 'vanilla'"),  # was recorded, unused, in config.json
    (["--key-init", "samples"], "--key-init (key_init, their keys' start) applies to --method mn, mn_ifilm or all"),
    (["--threads", "0"], "threads must be a positive integer, got 0"),
])
def test_classify_checks_its_settings_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--out", str(out),
                 *argv]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_regress_help_shows_the_estimators_own_defaults(capsys):
    from meta_neighborhoods.config import ESTIMATOR
    from meta_neighborhoods.estimators import MetaNeighborhoodsRegressor

    params = MetaNeighborhoodsRegressor().get_params()
    assert all(params[name] == value for name, value in vars(ESTIMATOR).items())  # one home for both
    with pytest.raises(SystemExit):
        main(["regress", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for option, value in (("--max-epochs", 3000), ("--batch-size", 128), ("--dictionary-size", 4096),
                          ("--top-k", 128), ("--slot-dropout", 0.5), ("--learning-rate", 0.001)):
        assert f"(default {value}, the estimator's" in shown.split(option, 2)[-1][:200], option


def test_regress_help_names_every_method_it_runs(capsys):
    """The methods --help names are those of the protocol (named in config.py, which imports no torch)."""
    from meta_neighborhoods.config import OPTIONAL_METHOD_NAMES, TABLE_METHOD_NAMES
    from meta_neighborhoods.experiments.cross_validation import BASELINES, TABLE_METHODS

    assert list(TABLE_METHOD_NAMES) == list(TABLE_METHODS) and list(OPTIONAL_METHOD_NAMES) == list(BASELINES)
    with pytest.raises(SystemExit):
        main(["regress", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert all(label in shown for label in (*TABLE_METHOD_NAMES.values(), *OPTIONAL_METHOD_NAMES.values()))


def test_a_command_that_reads_its_records_names_them():
    for command in COMMANDS:
        assert hasattr(command, "options_from_record") == bool(getattr(command, "RECORDS", ())), command.__name__


@pytest.mark.parametrize("argv", [
    ["regress", "--dataset", "gom", "--max-rows", "40", "--max-epochs", "1", "--seeds", "1", "--folds", "2"],
    ["ablate", "--dataset", "gom", "--max-rows", "40", "--max-epochs", "1", "--seeds", "1", "--folds", "2", "--param",
     "top_k", "--values", "2", "4"],
    ["spiral", "--epochs", "1", "--no-animation"],
], ids=["regress", "ablate", "spiral"])
def test_a_table_run_into_a_folder_another_run_is_writing_is_refused(tmp_path, capsys, argv):
    """Two runs into one --out at once both ended with status 0, and the later one removed what the first wrote."""
    from meta_neighborhoods.io import lock

    out = tmp_path / "run"
    out.mkdir()
    with lock(out):
        assert main([*argv, "--quiet", "--out", str(out)]) == 1
    assert f"{out} is being written by process" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == [".lock"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0  # released with its holder


@pytest.mark.parametrize("argv, mark, kind", [
    (["spiral", "--epochs", "1", "--no-animation"], "results.json", "regress or ablate"),
    (["regress", "--dataset", "gom", "--max-rows", "40", "--seeds", "1", "--folds", "2"], "split.json", "classify"),
    (["ablate", "--dataset", "gom", "--param", "top_k", "--values", "2"], "spiral.png", "spiral"),
    (["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla"], "spiral.png", "spiral"),
    (["analyze", "--run", "r", "--what", "cosine"], "results.json", "regress or ablate"),
], ids=["spiral", "regress", "ablate", "classify", "analyze"])
def test_a_folder_holding_another_command_s_run_is_refused_even_with_overwrite(tmp_path, capsys, argv, mark, kind):
    """Their files mixed (regress beside a classify run), or one's records replaced the other's (spiral's
    metrics.json and run.json over a classify run's, leaving its checkpoints)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / mark).write_text("{}")
    (tmp_path / "r").mkdir()
    argv = [*argv, "--quiet"] if argv[0] != "analyze" else [*argv, "--run", str(tmp_path / "r")]
    assert main([*argv, "--out", str(out), "--overwrite"]) == 1
    assert f"{out} holds a {kind} run ({mark}): a " in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) in ([mark], [".lock", mark])  # classify locks, then claims


def test_quiet_turns_the_progress_bars_off():
    from meta_neighborhoods.commands.common import fit_options

    for extra, progress in (([], True), (["--quiet"], False)):
        args = build_parser().parse_args(["regress", "--dataset", "gom", "--out", "x", *extra])
        assert fit_options(args)["progress"] is progress


def test_a_table_digest_in_capitals_names_the_same_table():
    from types import SimpleNamespace

    from meta_neighborhoods.commands.table_source import load_table_source
    from meta_neighborhoods.datasets.tables import load_table

    digest = load_table("gom").sha256().upper()  # --table-sha256 takes [0-9a-fA-F]{64}
    args = SimpleNamespace(data_file=None, target=None, dataset="gom", data_dir=None, table_sha256=digest)
    assert load_table_source(args).name == "gom"


@pytest.mark.parametrize("torchrun", [False, True])
def test_the_command_leaves_a_torchrun_process_without_the_interpreter_s_finalisation(monkeypatch, capsys, torchrun):
    """gloo's threads can abort a finished rank in the interpreter's finalisation (pytorch/pytorch#179291), and
    torchrun then reports a failed run: a process it launched exits at once with the command's code, streams
    flushed; any other exits as usual."""
    import torch.distributed  # noqa: F401 (imported by any command that can join a group)

    from meta_neighborhoods import cli

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.setenv(name, "0" if name != "WORLD_SIZE" else "1") if torchrun else monkeypatch.delenv(
            name, raising=False)
    monkeypatch.setattr(sys, "argv", ["meta-neighborhoods", "regress", "--config", "/nonexistent/c.toml"])
    exits = []
    monkeypatch.setattr(cli.os, "_exit", lambda code: exits.append(code) or sys.exit(code))
    with pytest.raises(SystemExit) as exit_info:
        cli.entry()
    assert exit_info.value.code == 2 and exits == ([2] if torchrun else [])
    assert "c.toml" in capsys.readouterr().err


def test_the_command_leaves_after_ctrl_c_cut_torch_s_import_short(monkeypatch, capsys):
    """main said "interrupted" and returned 130, then the console command imported the package's torchrun helpers,
    which imported the half-imported torch again: a traceback and status 1."""
    from meta_neighborhoods import cli

    def interrupted_import(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("meta_neighborhoods.experiments.spiral.run_spiral", interrupted_import)
    monkeypatch.setitem(sys.modules, "torch.distributed", None)  # left half-imported by the interrupt
    monkeypatch.setitem(sys.modules, "meta_neighborhoods.distributed", None)  # importing it would fail
    monkeypatch.setattr(sys, "argv", ["meta-neighborhoods", "spiral", "--out", "/nonexistent/x", "--quiet"])
    with pytest.raises(SystemExit) as exit_info:
        cli.entry()
    assert exit_info.value.code == 130 and capsys.readouterr().err == "meta-neighborhoods spiral: interrupted\n"


def test_sigterm_stops_a_command_as_ctrl_c_does_and_its_run_cleans_up(tmp_path):
    """SIGTERM (``kill``, a job scheduler's stop) ended the process on the spot: the folder it had made for its run
    stayed, holding the lock file and the hidden stage of files it would have written. It is now an interrupt."""
    import signal
    import time

    out = tmp_path / "made" / "by_the_run"
    process = subprocess.Popen([sys.executable, "-m", "meta_neighborhoods", "spiral", "--out", str(out), "--epochs",
                                "100000", "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".staged.*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert process.stderr.read() == "meta-neighborhoods spiral: terminated\n"
    assert list(tmp_path.iterdir()) == []


def test_numpy_s_random_module_is_imported_before_a_command_can_be_interrupted(tmp_path):
    """numpy imports numpy.random at its first use, and a SIGTERM or Ctrl-C that lands within that import is lost
    (its Cython module's set-up swallows it): the spiral's run, which first draws after its stage was made, went on
    training after a SIGTERM about one time in three, and the test above timed out."""
    code = ("import sys\nfrom meta_neighborhoods import cli\n"
            "cli._terminated_as_interrupt = lambda: sys.exit(3 if 'numpy.random' in sys.modules else 4)\n"
            "sys.exit(cli.main(['spiral', '--out', 'x', '--quiet']))")
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 3 and not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["regress", "ablate"])
def test_every_estimator_option_of_a_command_reaches_the_estimator(command):
    """An option named as an estimator parameter but left out of ESTIMATOR_OPTIONS parsed, and vanished from the
    run and its record: the estimator trained at its default."""
    from meta_neighborhoods import cli
    from meta_neighborhoods.commands.common import ESTIMATOR_OPTIONS
    from meta_neighborhoods.estimators import MetaNeighborhoodsRegressor

    options = {action.dest for action in cli._build()[1][command]._actions}
    given = options & set(MetaNeighborhoodsRegressor().get_params()) - {"device", "verbose"}  # -v: the log level
    assert given <= set(ESTIMATOR_OPTIONS) and (given == set(ESTIMATOR_OPTIONS) or command == "ablate")


def test_ctrl_c_while_the_command_line_loads_is_said_in_one_line(monkeypatch, capsys):
    """Ctrl-C within the first fifth of a second, while the command line's modules were imported, gave Python's
    traceback (the console command's import of cli ran outside any handler)."""
    import importlib.abc

    from meta_neighborhoods.__main__ import console

    class Interrupted(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "meta_neighborhoods.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "meta_neighborhoods.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupted(), *sys.meta_path])
    with pytest.raises(SystemExit) as exit_info:
        console()
    assert exit_info.value.code == 130 and capsys.readouterr().err == "meta-neighborhoods: interrupted\n"



def test_sigterm_is_an_interrupt_only_off_torchrun_and_its_handler_is_given_back(monkeypatch, tmp_path):
    """Under torchrun SIGTERM keeps its handler (the agent stops its ranks with it); and main, run in a process of
    its own (a notebook, a test), gives back the handler it found, which it left raising Terminated there."""
    import signal

    from meta_neighborhoods import cli

    before = signal.getsignal(signal.SIGTERM)
    with cli._terminated_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert main(["analyze", "--run", str(tmp_path / "nope"), "--what", "cosine", "--quiet"]) == 1
    assert signal.getsignal(signal.SIGTERM) is before
    monkeypatch.setattr(cli, "launched_by_torchrun", lambda: True)
    with cli._terminated_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is before


def test_spiral_trains_on_the_threads_it_records_and_its_record_reruns_every_option(tmp_path, monkeypatch):
    """spiral takes --threads as the other training commands do; its metrics.json records every option it took
    (threads: the count it ran on) and --config with it reruns them all."""
    import json

    import torch

    from meta_neighborhoods.experiments import spiral

    seen, fit, threads = [], spiral.fit, torch.get_num_threads()
    monkeypatch.setattr(spiral, "fit", lambda *args, **kwargs: (seen.append(torch.get_num_threads()),
                                                                fit(*args, **kwargs))[1])
    own = 2 if threads == 1 else 1  # not the process's
    assert main(["spiral", "--out", str(tmp_path / "run"), "--epochs", "1", "--seed", "3", "--no-animation",
                 "--device", "cpu", "--threads", str(own), "--quiet"]) == 0
    record = tmp_path / "run" / "metrics.json"
    config = json.loads(record.read_text())["config"]
    assert {name: config[name] for name in ("seed", "epochs", "animation", "device", "threads")} == {
        "seed": 3, "epochs": 1, "animation": False, "device": "cpu", "threads": own}
    from meta_neighborhoods.cli import _build

    taken = {action.dest for action in _build()[1]["spiral"]._actions}  # a run's settings, less where and how it says
    assert taken - {"help", "config", "out", "overwrite", "quiet", "verbose"} == {
        "seed", "epochs", "no_animation", "device", "threads"}  # each recorded above
    assert main(["spiral", "--config", str(record), "--out", str(tmp_path / "rerun"), "--quiet"]) == 0
    rerun = json.loads((tmp_path / "rerun" / "metrics.json").read_text())["config"]
    assert rerun == config and seen == [own] * 4 and torch.get_num_threads() == threads
    assert main(["spiral", "--out", str(tmp_path / "default"), "--epochs", "1", "--no-animation", "--quiet"]) == 0
    assert json.loads((tmp_path / "default" / "metrics.json").read_text())["config"]["threads"] == threads


def test_a_python_warning_is_one_of_the_commands_warning_lines(monkeypatch, capsys):
    """A warning of the estimators or scikit-learn, met by a command, reads as the command's own lines do, not as
    Python's two (``<frozen runpy>:88: UserWarning: ...`` and its source line)."""
    import warnings

    from meta_neighborhoods.commands import spiral

    def warns(args):
        warnings.warn("6 training rows leave 1 for validation", UserWarning)
        return 0

    monkeypatch.setattr(spiral, "run", warns)
    before = warnings.showwarning
    assert main(["spiral", "--out", "o"]) == 0
    assert capsys.readouterr().err == "meta-neighborhoods spiral: warning: 6 training rows leave 1 for validation\n"
    assert warnings.showwarning is before  # left as it was found


def test_an_option_no_command_takes_is_refused_by_the_command(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--dataset", "gom", "--out", "o", "--bogus", "1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("meta-neighborhoods fit: error: unrecognized arguments: --bogus 1")
    with pytest.raises(SystemExit):  # an option of the command's, before its name
        main(["-v", "fit", "--dataset", "gom", "--out", "o"])
    assert "unrecognized arguments: -v (the command's options go after its name" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["spiral", "--out", ""], ["regress", "--dataset", "gom", "--out", ""],
    ["regress", "--data-file", "", "--target", "y", "--out", "r"],
    ["ablate", "--dataset", "gom", "--param", "temperature", "--values", "1", "--out", ""],
    ["fit", "--data-file", "t.csv", "--target", "y", "--out", ""],
    ["predict", "--model", "m", "--data-file", "t.csv", "--out", ""], ["predict", "--model", "", "--data-file",
                                                                        "t.csv", "--out", "p.csv"],
    ["classify", "--dataset", "digits", "--out", ""], ["classify", "--resume", ""],
    ["classify", "--dataset", "digits", "--out", "r", "--data-dir", " "],
    ["analyze", "--run", "", "--what", "cosine", "--out", "a"], ["export", "--run", "", "--out", "m.onnx"],
], ids=lambda argv: " ".join(argv))
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch, capsys, argv):
    """Found by a trial: ``--out ""`` (an unset shell variable) wrote a whole classify run into the current
    folder."""
    monkeypatch.chdir(tmp_path)
    try:
        status = main(argv)
    except SystemExit as stopped:  # argparse's own exit, where the option is its subcommand's
        status = stopped.code
    assert status == 2
    assert "an empty path (an unset shell variable?)" in capsys.readouterr().err and not any(tmp_path.iterdir())
