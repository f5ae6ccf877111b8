"""Run folders (runs.py): what a classify run records about its data, and how analyze reads it back."""

import dataclasses
import json
import os
import pickle
import re
import shlex
import sys
from itertools import count
from pathlib import Path

import numpy as np
import pytest
import torch

from meta_neighborhoods import checkpoint, cli, image_methods, run_record, runs
from meta_neighborhoods.checkpoint import CheckpointError
from meta_neighborhoods.cli import main
from meta_neighborhoods.config import ClassificationConfig
from meta_neighborhoods import io, signals
from meta_neighborhoods.io import inner_folder, read_json_object
from meta_neighborhoods.datasets.images import load_image_dataset
from meta_neighborhoods.experiments.analysis import load_run
from meta_neighborhoods.experiments.classification import run_classification

PYTHON_M = [sys.executable, "-m", "meta_neighborhoods"]  # how a program's call of cli.main(argv) runs again


def _split():
    return runs.Split(np.array([0, 2, 5]), np.array([1, 4]), (0.5,), (0.25,))


def test_split_round_trips(tmp_path):
    runs.write_split(tmp_path, _split())
    back = runs.read_split(tmp_path, n_images=6)
    assert back.train.tolist() == [0, 2, 5] and back.validation.tolist() == [1, 4]
    assert (back.mean, back.std) == ((0.5,), (0.25,))


def test_a_split_that_does_not_fit_the_data_set_is_refused(tmp_path):
    runs.write_split(tmp_path, _split())
    with pytest.raises(ValueError, match=r"split.json: the train indices do not fit a train split of 5 images"):
        runs.read_split(tmp_path, n_images=5)
    saved = json.loads((tmp_path / "split.json").read_text())
    for index in (10**30, -1):  # an int64 array overflowed; numpy would take -1 for the last image
        (tmp_path / "split.json").write_text(json.dumps({**saved, "validation": [index]}))
        with pytest.raises(ValueError, match=r"split.json: the validation indices do not fit a train split of 6"):
            runs.read_split(tmp_path, n_images=6)


def test_a_run_without_a_split_record_is_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="split.json is missing: removed, or the run was written by an older "
                       "version of meta-neighborhoods that did not record it"):
        runs.read_split(tmp_path, n_images=5)


def test_analysis_trains_on_exactly_the_images_the_run_recorded(tmp_path):
    out = tmp_path / "run"
    run_classification("digits", "convnet4", "mn", out, epochs=1, batch_size=64, train_subset=300, device="cpu",
                       progress=False)
    saved = json.loads((out / runs.SPLIT).read_text())
    dataset = load_image_dataset("digits")
    assert len(saved["train"]) == 300 and not set(saved["train"]) & set(saved["validation"])
    assert len(saved["train"]) + len(saved["validation"]) < len(dataset.train)  # the subset, not the whole split
    assert saved["mean"] == list(dataset.mean)
    run = load_run(out, device="cpu")
    np.testing.assert_array_equal(run.train.images, dataset.train.images[saved["train"]])
    assert runs.SPLIT in json.loads((out / runs.METRICS).read_text())["files"]


# ---------------------------------------------------------------------------------------------------
# A run folder is untrusted: every field checked, no path taken from it


def _config(**changes):
    return {**dataclasses.asdict(ClassificationConfig("digits", "convnet4", "mn", epochs=2)), **changes}


def test_paths_in_a_run_folder_are_never_used(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_config(data_dir="/elsewhere", cache_dir="/tmp/evil")))
    config = runs.read_config(tmp_path)
    assert (config.data_dir, config.cache_dir) == (None, None)
    assert runs.read_config(tmp_path, data_dir="mine").data_dir == "mine"


@pytest.mark.parametrize("changes, message", [
    ({"method": "rm -rf /"}, "unknown method 'rm -rf /'"),
    ({"backbone": "vgg"}, "unknown backbone 'vgg'"),
    ({"dataset": "../../evil"}, "unknown image data set '../../evil'"),  # was a usage error naming no file
    ({"dataset": ["digits"]}, "field dataset has the wrong type"),
    ({"epochs": "2"}, "field epochs has the wrong type"),
    ({"epochs": True}, "field epochs has the wrong type"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"seed": -3}, "seed must be an integer from 0 to 4611686018427387903, got -3"),
    ({"key_init": "zeros"}, "unknown key initialisation"),
    ({"epoch": 90}, "unknown field 'epoch', which classify never writes"),  # an edit that would have been ignored
])
def test_every_field_of_a_run_config_is_checked(tmp_path, changes, message):
    (tmp_path / "config.json").write_text(json.dumps(_config(**changes)))
    with pytest.raises(runs.RunFolderError, match=f"config.json: .*{re.escape(message)}"):
        runs.read_config(tmp_path)


@pytest.mark.parametrize("method", image_methods.METHOD_NAMES)
def test_what_classify_records_beside_its_configuration_is_known(method):
    from meta_neighborhoods.experiments.classification import _run_config

    config = ClassificationConfig("digits", "convnet4", method, epochs=2)
    recorded = _run_config(config, {"num_classes": 10})
    assert set(recorded) - set(dataclasses.asdict(config)) <= runs.RECORDED_BESIDE


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "should hold a JSON object"), ("{", "is not readable JSON"), ("[" * 100000, "is not readable JSON"),
    ('{"dataset": "digits"}', "lacks backbone, method, epochs"),
])
def test_a_damaged_run_config_is_named(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(runs.RunFolderError, match=message):
        runs.read_config(tmp_path)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_run_folder_runs_no_code(tmp_path, capsys):
    """A run folder naming cifar100 and a data folder with a crafted pickle: analyze reads neither."""
    evil = tmp_path / "evil" / "cifar-100-python"
    evil.mkdir(parents=True)
    marker = tmp_path / "pwned"
    for name in ("meta", "train", "test"):
        (evil / name).write_bytes(pickle.dumps(_RunsCode(marker)))
    run = tmp_path / "run"
    run.mkdir()
    args = {"method": "mn", "backbone": "convnet4", "in_channels": 3, "num_classes": 4, "dictionary_size": 8}
    image_methods.save_checkpoint(run / "best", image_methods.build_model(**args), model_args=args, epoch=1)
    (run / "config.json").write_text(json.dumps(_config(dataset="cifar100", data_dir=str(tmp_path / "evil"))))
    (tmp_path / "nothing-here").mkdir()  # the data folder given, without the data set
    main(["analyze", "--run", str(run), "--what", "cosine", "--quiet", "--device", "cpu",
          "--data-dir", str(tmp_path / "nothing-here")])
    assert not marker.exists()
    assert "cifar100" in capsys.readouterr().err  # it looked where it was told, not where the folder says


# ---------------------------------------------------------------------------------------------------
# Never lose or mix up work


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    with runs.lock(tmp_path):
        with pytest.raises(runs.RunFolderError, match=rf"is being written by process {os.getpid()} "):
            with runs.lock(tmp_path):
                pass
    with runs.lock(tmp_path):  # released when the holder is done
        pass


def test_classify_into_a_folder_another_run_is_writing_fails(tmp_path, capsys):
    with runs.lock(tmp_path):
        argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                "--out", str(tmp_path), "--device", "cpu", "--quiet"]
        assert main(argv) == 1
    assert "is being written by process" in capsys.readouterr().err


def test_a_folder_holding_a_run_is_refused_and_overwrite_removes_only_its_files(tmp_path):
    (tmp_path / "config.json").write_text('{"method": "all", "meta_neighborhoods": {}}')
    for name in ("run.json", "metrics.csv", "cosine.png", "tsne.json"):  # analyze writes into the run by default
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out.tfevents.1.host").write_text("x")
    (tmp_path / "tensorboard" / "other").mkdir()  # another experiment's log the user keeps there: not this run's
    (tmp_path / "tensorboard" / "other" / "events.out.tfevents.2.host").write_text("x")
    image_methods.save_checkpoint(tmp_path / "best", torch.nn.Linear(1, 1), epoch=1)
    (tmp_path / "mn").mkdir()
    (tmp_path / "mn" / "config.json").write_text('{"method": "mn", "meta_neighborhoods": {}}')
    (tmp_path / "mn" / "metrics.json").write_text("{}")
    (tmp_path / "mn" / ".lock").write_text("")  # analyze of that method left it
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds a run") as refused:
        runs.claim(tmp_path, overwrite=False, method="all")  # no last checkpoint: --resume would say nothing is there
    assert "--resume" not in str(refused.value) and "--overwrite" in str(refused.value)
    image_methods.save_checkpoint(tmp_path / "mn" / "last", torch.nn.Linear(1, 1), epoch=1)
    with pytest.raises(FileExistsError, match="already holds a run .*--resume.*--overwrite"):
        runs.claim(tmp_path, overwrite=False, method="all")
    runs.claim(tmp_path, overwrite=True, method="all")  # a method's folder left empty goes too (a trial found five)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "notes.txt", "tensorboard", "tensorboard/other", "tensorboard/other/events.out.tfevents.2.host"]
    (tmp_path / "tensorboard" / "other" / "events.out.tfevents.2.host").unlink()
    (tmp_path / "tensorboard" / "other").rmdir()
    (tmp_path / "tensorboard").rmdir()
    runs.claim(tmp_path, overwrite=False, method="all")  # nothing of a run is left


def test_a_folder_of_another_run_s_analyses_is_refused_before_the_images_load(tmp_path, capsys, monkeypatch):
    """analyze --out writes a run's analyses into a folder of their own: a run there would pass them for its own
    (a trial). A folder holding a run is refused before the images load, as it is after."""
    from meta_neighborhoods.experiments import classification

    loaded = []
    monkeypatch.setattr(classification, "load_image_dataset", lambda *args, **kwargs: loaded.append(1))
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "tsne.json").write_text("{}")
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "config.json").write_text('{"method": "mn", "meta_neighborhoods": {}}')
    (tmp_path / "held" / "metrics.json").write_text("{}")
    (tmp_path / "all" / "mn").mkdir(parents=True)  # analyze --out all/mn: a method's folder of --method all
    (tmp_path / "all" / "mn" / "cosine.png").write_text("x")
    (tmp_path / "file").write_text("mine")
    for out, method, said in (
            ("analysis", "mn", "holds tsne.json of an analysis of another run, which would pass for this run's"),
            ("held", "mn", "already holds a run (config.json, metrics.json)"),
            ("all", "all", f"{tmp_path / 'all' / 'mn'} holds cosine.png of an analysis of another run"),
            ("file", "mn", "it is a file, not a folder")):
        assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", method, "--epochs",
                     "1", "--out", str(tmp_path / out), "--device", "cpu", "--quiet"]) == 1
        assert said in capsys.readouterr().err and not loaded
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "all", "all/mn", "all/mn/cosine.png", "analysis", "analysis/tsne.json", "file", "held", "held/config.json",
        "held/metrics.json"]

@pytest.mark.parametrize("kind", ["link", "folder", "fifo"])
def test_a_record_is_read_only_from_a_regular_file_in_its_folder(tmp_path, kind):
    """What analyze, export, resume and --config read from a folder given to them: never through a link, which
    could lead anywhere on the machine, and never from a pipe, whose read would block."""
    (tmp_path / "elsewhere.json").write_text("{}")
    path = tmp_path / "config.json"
    {"link": lambda: path.symlink_to(tmp_path / "elsewhere.json"), "folder": path.mkdir,
     "fifo": lambda: os.mkfifo(path)}[kind]()
    with pytest.raises(runs.RunFolderError, match="config.json is missing \\(or not a regular file\\)"):
        read_json_object(path)
    assert read_json_object(tmp_path / "elsewhere.json") == {}


@pytest.mark.parametrize("where, method", [(".", "mn"), (".", "all"), ("mn", "all")])
@pytest.mark.parametrize("content, problem", [
    ('{"lr": 0.1}', "is not the configuration a classify run writes"), ("epochs: 3", "is not readable JSON"),
    ('{"method": "mn"}', "is not the configuration"), ('{"method": "x", "meta_neighborhoods": {}}', "is not the"),
    ("link", "is a link or not a regular file"), ("folder", "is a link or not a regular file")])
def test_a_config_json_no_run_wrote_is_refused_even_with_overwrite(tmp_path, where, method, content, problem):
    """A user's own config.json where the new run would write its configuration is neither a run's file that
    --overwrite may remove nor one the run may replace: refused, saying why, before anything is removed."""
    (tmp_path / where).mkdir(exist_ok=True)
    path = tmp_path / where / "config.json"
    if content == "link":  # even to a run's configuration: a link is never written through
        (tmp_path / "elsewhere.json").write_text('{"method": "mn", "meta_neighborhoods": {}}')
        path.symlink_to(tmp_path / "elsewhere.json")
    elif content == "folder":
        path.mkdir()
    else:
        path.write_text(content)
    (tmp_path / "run.json").write_text("{}")  # an earlier run's file, which a refused claim must leave
    assert "config.json" not in runs.holds_a_run(tmp_path / where)
    for overwrite in (False, True):
        with pytest.raises(runs.RunFolderError, match=f"config.json {problem}.*the run would replace it"):
            runs.claim(tmp_path, overwrite=overwrite, method=method)
    assert path.exists() and (tmp_path / "run.json").exists()


def test_a_config_json_in_a_folder_the_run_does_not_write_is_left_alone(tmp_path):
    """Only the files the new run writes are its concern: a user's config.json in another method's folder, or deeper,
    neither blocks a run of one method nor is removed with the earlier run's files around it."""
    (tmp_path / "config.json").write_text('{"method": "all", "meta_neighborhoods": {}}')  # an earlier run's
    (tmp_path / "mn" / "vanilla").mkdir(parents=True)
    (tmp_path / "mn" / "config.json").write_text('{"method": "mn", "meta_neighborhoods": {}}')
    (tmp_path / "mn" / "metrics.csv").write_text("x")
    for mine in (tmp_path / "vanilla" / "config.json", tmp_path / "mn" / "vanilla" / "config.json"):
        mine.parent.mkdir(exist_ok=True)
        mine.write_text('{"lr": 0.1}')
    runs.claim(tmp_path, overwrite=True, method="mn")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "mn", "mn/vanilla", "mn/vanilla/config.json", "vanilla", "vanilla/config.json"]


def test_a_folder_of_analyses_alone_is_not_a_run_nor_a_place_for_one(tmp_path):
    """analyze --out FOLDER writes figures there: not a run, nor files --overwrite may remove; and a run there would
    sit beside another run's analyses, which would pass for its own (a trial)."""
    for name in ("cosine.png", "tsne.json"):
        (tmp_path / name).write_text("x")
    assert runs.holds_a_run(tmp_path) == []
    for overwrite in (False, True):
        with pytest.raises(runs.RunFolderError, match="holds tsne.json, cosine.png of an analysis of another run"):
            runs.claim(tmp_path, overwrite=overwrite, method="mn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cosine.png", "tsne.json"]


def test_resume_recomputes_what_a_stale_metrics_file_claims(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
            "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert main(argv) == 1 and "already holds a run" in capsys.readouterr().err
    (out / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": 0.123}))
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["test_accuracy"] == metrics["test_accuracy"]
    assert resumed["seconds"] == metrics["seconds"] > 0  # the epochs' time, not the resuming process's
    # every epoch had trained: the test ran again, and no record claims a resumed run (none was interrupted)
    assert resumed == metrics and json.loads((out / "run.json").read_text())["resumed"] == []


def test_a_refused_resume_leaves_the_run_record_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    last = json.loads((out / "last.json").read_text())
    last["optimizer"]["state"]["0"] = {"extra": 1.0}
    (out / "last.json").write_text(json.dumps(last))
    record = (out / "run.json").read_bytes()
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert "last.json: the optimiser state of parameter 0" in capsys.readouterr().err
    assert (out / "run.json").read_bytes() == record  # no resume recorded: none took place


def test_a_resume_refused_for_its_run_record_writes_nothing(tmp_path, capsys, monkeypatch):
    """Found by a trial: metrics.csv was written again before run.json was refused."""
    out = _interrupted_vanilla_run(tmp_path / "run", monkeypatch)
    (tmp_path / "elsewhere.json").write_bytes((out / "run.json").read_bytes())
    (out / "run.json").unlink()
    (out / "run.json").symlink_to(tmp_path / "elsewhere.json")
    before = {path.name: (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns)
              for path in out.iterdir() if path.is_file() and not path.is_symlink() and path.name != ".lock"}
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert "run.json" in capsys.readouterr().err
    assert {path.name: (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns)
            for path in out.iterdir() if path.is_file() and not path.is_symlink() and path.name != ".lock"} == before


@pytest.mark.parametrize("interrupt, said, status", [(KeyboardInterrupt, "interrupted", 130),
                                                     (cli.Terminated, "terminated", 143)])
@pytest.mark.parametrize("kept", [None, "last", "mn/last"])
@pytest.mark.parametrize("folders", [False, True], ids=["", "folders"])
@pytest.mark.parametrize("called", [False, True], ids=["", "called"])  # by a program: cli.main(argv)
def test_ctrl_c_names_the_resume_command_where_a_checkpoint_is_kept(tmp_path, capsys, monkeypatch, kept, interrupt,
                                                                    said, status, folders, called):
    """And SIGTERM (``cli.Terminated``), which interrupts a run as Ctrl-C does. The data and cache folders given are
    given again: a run folder never records them. A program's call is continued as ``python -m``, not as the
    program's own command line."""
    from meta_neighborhoods.experiments import classification

    out = tmp_path / "my run"

    def interrupted(*args, **kwargs):
        if kept:  # an epoch had finished (of the one method, or of one of --method all's)
            (out / kept).parent.mkdir(parents=True)
            image_methods.save_checkpoint(out / kept, torch.nn.Linear(1, 1), epoch=1)
        raise interrupt

    monkeypatch.setattr(classification, "run_classification", interrupted)
    (tmp_path / "my data").mkdir()
    given = ["--data-dir", str(tmp_path / "my data"), "--cache-dir", str(tmp_path / "cache")] if folders else []
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn", "--out", str(out),
            "--quiet", *given]
    monkeypatch.setattr(sys, "argv", ["/kernel/launcher.py", "-f"] if called else ["meta-neighborhoods", *argv])
    assert (main(argv) if called else main()) == status
    error = capsys.readouterr().err
    launcher = shlex.join(PYTHON_M) if called else "meta-neighborhoods"
    if kept:
        given = f" --data-dir '{tmp_path / 'my data'}' --cache-dir {tmp_path / 'cache'}" if folders else ""
        assert error == (f"meta-neighborhoods classify: {said}; the last checkpoint is kept; continue with: "
                         f"{launcher} classify --resume '{out}'{given}\n")
    else:
        assert error == (f"meta-neighborhoods classify: {said}; no epoch had finished, so no checkpoint is "
                         f"kept; start again with: {launcher} {shlex.join([*argv, '--overwrite'])}\n")


def test_the_lock_holder_removes_what_a_killed_writer_left(tmp_path):
    (tmp_path / "mn").mkdir()
    leftovers = [tmp_path / ".config.json.ab12cd.tmp", tmp_path / "mn" / ".metrics.json.x1y2.tmp",
                 tmp_path / "mn" / ".best.0123abcd.safetensors.q9w8.tmp"]
    mine = tmp_path / ".notes.tmp"
    for path in [*leftovers, mine]:
        path.write_text("x")
    with runs.lock(tmp_path):
        pass
    assert not any(path.exists() for path in leftovers) and mine.exists()


def test_the_lock_holder_removes_the_weights_a_writer_killed_after_its_commit_left(tmp_path):
    checkpoint.save(tmp_path / "best", {"w": torch.zeros(2)}, {"step": 0})
    named = next(tmp_path.glob("best.*.safetensors")).name
    stale = tmp_path / "best.0123abcd.safetensors"  # what the commit replaced, not yet removed
    stale.write_bytes((tmp_path / named).read_bytes())
    for name in ("best.backup.safetensors", "last.0123abcd.safetensors"):  # not a checkpoint's; no manifest of last
        (tmp_path / name).write_text("x")
    with runs.lock(tmp_path):
        pass
    assert sorted(path.name for path in tmp_path.glob("*.safetensors")) == sorted(
        [named, "best.backup.safetensors", "last.0123abcd.safetensors"])
    assert checkpoint.load(tmp_path / "best")[1]["step"] == 0


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_the_lock_is_never_taken_through_a_link_or_on_what_is_not_a_file(tmp_path, kind):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    if kind == "link":
        (run / ".lock").symlink_to(victim)
    else:
        os.mkfifo(run / ".lock")
    with pytest.raises(runs.RunFolderError, match=r"\.lock .*remove it"):
        with runs.lock(run):
            pass
    assert victim.read_text() == "keep me"


def test_a_method_folder_that_is_a_link_is_refused_and_never_cleaned(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".config.json.ab12cd.tmp").write_text("not the run's")
    (elsewhere / "config.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    (run / "mn").symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match="is a link"):
        inner_folder(run, "mn")
    with runs.lock(run):
        pass
    assert runs.holds_a_run(run) == [] and sorted(p.name for p in elsewhere.iterdir()) == [
        ".config.json.ab12cd.tmp", "config.json"]


def test_analyze_refuses_a_folder_whose_files_disagree(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    args = {"method": "mn", "backbone": "convnet4", "in_channels": 3, "num_classes": 4, "dictionary_size": 8}
    image_methods.save_checkpoint(run / "best", image_methods.build_model(**args), model_args=args, epoch=1)
    (run / "config.json").write_text(json.dumps(_config()))  # digits: 1 channel, 10 classes
    assert main(["analyze", "--run", str(run), "--what", "cosine", "--quiet", "--device", "cpu"]) == 1
    assert "takes 3-channel images of 4 classes, but digits (named in its config.json) has 1 channels and 10 " \
           "classes" in capsys.readouterr().err


def test_the_parent_of_a_method_all_run_lists_its_method_folders(tmp_path):
    args = {"method": "mn", "backbone": "convnet4", "in_channels": 1, "num_classes": 3, "dictionary_size": 4}
    for method in ("vanilla", "mn"):
        (tmp_path / method).mkdir()
        image_methods.save_checkpoint(tmp_path / method / "best", image_methods.build_model(**args), model_args=args,
                                      epoch=1)
    with pytest.raises(FileNotFoundError, match=r"best.json is missing: .* holds a --method all run; pass one of its "
                                                r"method folders: .*vanilla, .*mn$"):
        runs.load_best_model(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"pass one of its method folders: [^,]*mn$"):  # keys to analyse
        load_run(tmp_path)  # analyze names only the folders it takes


@pytest.mark.parametrize("changes, message", [
    ({"train": "0,1"}, "field train should be a non-empty list"),
    ({"validation": [1.5]}, "should hold image indices"),
    ({"mean": [0.5, 0.5]}, "mean and std should be equally long lists"),
    ({"std": [0.0]}, "std positive"),
    ({"mean": ["x"]}, "mean and std should be equally long lists of finite numbers"),
])
def test_every_field_of_a_split_record_is_checked(tmp_path, changes, message):
    runs.write_split(tmp_path, _split())
    saved = json.loads((tmp_path / "split.json").read_text())
    (tmp_path / "split.json").write_text(json.dumps({**saved, **changes}))
    with pytest.raises(runs.RunFolderError, match=f"split.json: .*{message}"):
        runs.read_split(tmp_path, n_images=6)


@pytest.mark.parametrize("name", ["config.json", "best.json"])
def test_a_huge_record_is_refused_without_being_read_whole(tmp_path, name):
    """A sparse gigabyte takes no disk; reading it whole took 2.4 GB of memory."""
    with open(tmp_path / name, "wb") as handle:
        handle.truncate(1 << 30)
    read = (lambda: runs.read_config(tmp_path)) if name == "config.json" else (lambda: runs.load_best_model(tmp_path))
    limit = 256 if name == "config.json" else 32  # a run's record (a split's indices), a checkpoint's manifest
    with pytest.raises((runs.RunFolderError, CheckpointError), match=f"{name}.*larger than {limit} MiB"):
        read()


def test_a_method_all_resume_is_recorded_in_the_top_folder_once_a_checkpoint_is_restored(tmp_path, capsys,
                                                                                           monkeypatch):
    """Interrupted in mn's second epoch: vanilla, maxl and vanilla_ifilm had finished (they are tested again, and
    no record says they were resumed), mn continues (its record and the top folder's say so), mn_ifilm starts."""
    from meta_neighborhoods.experiments import classification

    out, fit = tmp_path / "run", classification.fit

    def interrupted_in_mn(model, batches, *, epochs, last, **options):
        fit(model, batches, epochs=1 if last.parent.name == "mn" else epochs, last=last, **options)
        if last.parent.name == "mn":
            raise KeyboardInterrupt

    monkeypatch.setattr(classification, "fit", interrupted_in_mn)
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "all", "--epochs", "2",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 130
    monkeypatch.setattr(classification, "fit", fit)
    finished = {name: (out / name / "metrics.json").read_bytes() for name in ("vanilla", "maxl", "vanilla_ifilm")}
    first = out / "vanilla" / "last.json"
    intact = first.read_text()
    damaged = json.loads(intact)
    damaged["optimizer"]["state"]["0"] = {"extra": 1.0}
    first.write_text(json.dumps(damaged))
    record = (out / "run.json").read_bytes()
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert "last.json: the optimiser state of parameter 0" in capsys.readouterr().err
    assert (out / "run.json").read_bytes() == record  # refused before any checkpoint was restored
    first.write_text(intact)
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    resumes = {folder.name: len(json.loads((folder / "run.json").read_text())["resumed"])
               for folder in [out, *(path.parent for path in out.glob("*/run.json"))]}
    assert resumes == {"run": 1, "vanilla": 0, "maxl": 0, "vanilla_ifilm": 0, "mn": 1, "mn_ifilm": 0}
    assert {name: (out / name / "metrics.json").read_bytes() for name in finished} == finished
    assert json.loads((out / "mn" / "metrics.json").read_text())["resumed"] is True
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "all", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet",
                 "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["resumed"] == []  # a new run's record


def _interrupted_vanilla_run(out, monkeypatch):
    """A vanilla classify run into ``out`` stopped (as by Ctrl-C) after its first of two epochs."""
    from meta_neighborhoods.experiments import classification

    fit = classification.fit

    def one_epoch(model, batches, *, epochs, **options):
        fit(model, batches, epochs=1, **options)
        raise KeyboardInterrupt

    monkeypatch.setattr(classification, "fit", one_epoch)
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "2",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 130
    monkeypatch.setattr(classification, "fit", fit)
    return out


def test_a_run_folder_written_before_threads_were_recorded_resumes_and_reruns(tmp_path, monkeypatch):
    """Such a run trained on torch's choice of threads, recorded nowhere but in run.json; and its vanilla records
    gave the dictionary size vanilla does not use, which a rerun from them now leaves out."""
    from meta_neighborhoods.commands.classify import options_from_record

    out = _interrupted_vanilla_run(tmp_path / "run", monkeypatch)
    for name, record in (("config.json", lambda meta: meta), ("last.json", lambda meta: meta["config"])):
        meta = json.loads((out / name).read_text())
        del record(meta)["threads"]
        record(meta)["dictionary_size"] = 100  # as every run recorded it
        (out / name).write_text(json.dumps(meta))
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed"] is True
    options = options_from_record(json.loads((out / "config.json").read_text()))
    assert "dictionary_size" not in options and options["method"] == "vanilla"


def test_a_method_without_neighbours_records_none_of_their_settings_and_an_older_run_that_did_resumes(tmp_path,
                                                                                                     monkeypatch):
    """vanilla trains no dictionary: its config.json (and checkpoint last) no longer record the neighbours' fixed
    settings, nor iFiLM's; such a config.json is still a run's, and a run of a version that recorded them (in both)
    continues, recording them as it did."""
    out = _interrupted_vanilla_run(tmp_path / "run", monkeypatch)
    neighbours = {name: value for name, value in image_methods.IMAGE_CONFIG.to_dict().items()
                  if name not in ("dictionary_size", "key_init")}  # as every run recorded them
    older = {"meta_neighborhoods": neighbours, "ifilm_where": "all"}
    for name, record in (("config.json", lambda meta: meta), ("last.json", lambda meta: meta["config"])):
        meta = json.loads((out / name).read_text())
        assert not set(older) & set(record(meta)) and "maxl" not in record(meta), name
        record(meta).update(older)
        (out / name).write_text(json.dumps(meta))
    assert "config.json" in runs.holds_a_run(out)
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert {name: config[name] for name in older} == older


def test_a_classify_run_trains_on_the_threads_it_records_and_so_do_its_resume_and_its_rerun(tmp_path, capsys,
                                                                                              monkeypatch):
    """Training sums in an order that depends on torch's threads: a resume, or a rerun from the record, on another
    count ended with other weights (every tensor differed)."""
    from meta_neighborhoods.experiments import classification

    seen, fit, threads = [], classification.fit, torch.get_num_threads()
    monkeypatch.setattr(classification, "fit", lambda *args, **kwargs: (seen.append(torch.get_num_threads()),
                                                                        fit(*args, **kwargs))[1])
    own = 2 if threads == 1 else 1  # not the process's
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
            "--batch-size", "64", "--train-subset", "200", "--device", "cpu", "--quiet"]
    assert main([*argv, "--threads", str(own), "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == own
    assert main(["classify", "--resume", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["classify", "--config", str(tmp_path / "run" / "config.json"), "--out", str(tmp_path / "rerun"),
                 "--quiet"]) == 0
    assert seen == [own] * 3 and torch.get_num_threads() == threads
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0  # torch's choice, recorded
    assert json.loads((tmp_path / "default" / "config.json").read_text())["threads"] == threads == seen[-1]
    assert main(["classify", "--resume", str(tmp_path / "run"), "--threads", str(threads)]) == 2
    assert "drop --threads" in capsys.readouterr().err


def test_a_rerun_from_a_record_is_checked_against_its_run_s_images_and_processes(tmp_path, capsys):
    """run.json beside a --config record says what its options do not: the images the run trained on (a rerun on
    other pixels under the same name is refused, as a resume is) and its processes (a rerun launched on another count
    is said to differ, naming it); a record without its run.json is rerun unchecked, saying so."""
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    record, saved = out / "config.json", json.loads((out / "run.json").read_text())
    rerun = ["classify", "--config", str(record), "--out", str(tmp_path / "rerun"), "--quiet"]
    (out / "run.json").write_text(json.dumps({**saved, "input": {**saved["input"], "mean": [0.25]}}))
    assert main(rerun) == 2
    assert f"{record}: the run trained on digits images of channel means [0.25], but" in capsys.readouterr().err
    assert not (tmp_path / "rerun").exists()
    assert main([*rerun, "--dataset", "mnist", "--data-dir", str(tmp_path)]) != 0  # another data set: not compared
    assert "channel means" not in capsys.readouterr().err
    (out / "run.json").write_text(json.dumps({**saved, "processes": 4}))
    assert main(rerun) == 0
    assert (f"{record}: its run trained on 4 process(es), this rerun on 1, as launched" in capsys.readouterr().err)
    (tmp_path / "copied.json").write_text(record.read_text())
    assert main(["classify", "--config", str(tmp_path / "copied.json"), "--out", str(tmp_path / "again"),
                 "--quiet"]) == 0
    assert ("copied.json has no run.json beside it (a run of an older version, or a record copied from its run "
            "folder): this rerun is not checked") in capsys.readouterr().err


def test_a_resume_on_other_images_under_the_same_name_is_refused(tmp_path, capsys):
    """cifar10 reads the official files where they are, else the JPEG copy: other pixels under one name. A run is
    continued (or analysed) only on the images whose channel statistics it recorded."""
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    split = json.loads((out / "split.json").read_text())
    (out / "split.json").write_text(json.dumps({**split, "mean": [split["mean"][0] * 1.01]}))  # as other images give
    record = (out / "run.json").read_bytes()
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert "split.json: the run trained on digits images of channel means" in capsys.readouterr().err
    assert (out / "run.json").read_bytes() == record
    with pytest.raises(runs.RunFolderError, match="not the images the run was trained on"):
        runs.read_split_of(out, load_image_dataset("digits"))
    (out / "split.json").write_text(json.dumps({**split, "mean": split["mean"] * 3, "std": split["std"] * 3}))
    with pytest.raises(runs.RunFolderError, match=r"split.json: mean and std should hold one value per channel of "
                                                  r"digits's images \(1\), got 3"):  # allclose broadcast them
        runs.read_split_of(out, load_image_dataset("digits"))


def test_a_resume_on_another_number_of_processes_is_refused_by_name(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert json.loads((out / "run.json").read_text())["processes"] == 1
    last = json.loads((out / "last.json").read_text())
    assert "processes" not in last["config"]  # one, as in every checkpoint written before the count was recorded
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    last["config"]["processes"] = 2  # as if torchrun had run it on two
    (out / "last.json").write_text(json.dumps(last))
    metrics = (out / "metrics.json").read_bytes()
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert ("last.json was written by a run of 2 process(es), and this one runs 1: resume it with as many (torchrun "
            "--nproc_per_node 2)") in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == metrics


def test_a_resume_on_a_count_of_processes_its_batch_size_does_not_split_is_refused_as_such(tmp_path, capsys,
                                                                                           monkeypatch):
    """A trial resumed a 2-process run of batch 64 on 3: the batch size, which the user had not given and cannot
    change on a resume, was blamed (a usage error)."""
    from meta_neighborhoods import distributed

    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    (out / "run.json").write_text(json.dumps({**json.loads((out / "run.json").read_text()), "processes": 2}))
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert ("run.json was written by a run of 2 process(es), and this one runs 3: resume it with as many (torchrun "
            "--nproc_per_node 2)") in capsys.readouterr().err


def test_a_damaged_best_checkpoint_is_refused_before_a_resume_trains(tmp_path, capsys, monkeypatch):
    from meta_neighborhoods.experiments import classification

    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    best = next(out.glob("best.*.safetensors"))
    damaged = bytearray(best.read_bytes())
    damaged[-1] ^= 0xFF
    best.write_bytes(bytes(damaged))
    trained = []
    monkeypatch.setattr(classification, "fit", lambda *args, **kwargs: trained.append(1))
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert best.name in capsys.readouterr().err and not trained


@pytest.mark.parametrize("swap", ["another run's", "edited epoch", "edited model_args"])
def test_another_run_s_best_checkpoint_is_refused_by_a_resume_and_an_analysis(tmp_path, capsys, monkeypatch,
                                                                             swap):
    """Found by a trial: best of a run of another seed, copied in, was resumed, tested and exported as this run's
    (with this run's best epoch and validation accuracy beside another network's test accuracy)."""
    from meta_neighborhoods.experiments import classification

    runs_of = {}
    for seed in ("0", "1"):
        runs_of[seed] = tmp_path / seed
        assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs",
                     "1", "--batch-size", "64", "--train-subset", "200", "--out", str(runs_of[seed]), "--device",
                     "cpu", "--quiet", "--seed", seed]) == 0
    out = runs_of["0"]
    if swap == "another run's":
        for path in out.glob("best.*"):
            path.unlink()
        for path in runs_of["1"].glob("best.*"):
            (out / path.name).write_bytes(path.read_bytes())
    else:
        meta = json.loads((out / "best.json").read_text())
        meta.update(epoch=99) if swap == "edited epoch" else meta["model_args"].update(num_classes=11)
        (out / "best.json").write_text(json.dumps(meta))
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    trained = []
    monkeypatch.setattr(classification, "fit", lambda *args, **kwargs: trained.append(1))
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    message = "one of them is another run's checkpoint, or an edited one" if swap != "edited model_args" else \
        "('num_classes': 11 against 10): another run's checkpoint"  # the field that differs, not two cut reprs
    assert message in capsys.readouterr().err and not trained
    assert main(["analyze", "--run", str(out), "--what", "cosine", "--out", str(tmp_path / "analysis"), "--quiet"]) == 1
    assert (message if swap != "edited model_args" else "best.json: model_args") in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before


@pytest.mark.parametrize("damage, message", [
    (lambda out: (out / "config.json").write_text(json.dumps({**json.loads((out / "config.json").read_text()),
                                                              "model": {"method": "mn"}})),
     "config.json records"),
    (lambda out: (out / "config.json").write_text("{bad"), "config.json"),
    (lambda out: ((out / ".lock").unlink(), (out / ".lock").symlink_to(out.parent / "elsewhere")), "is a link"),
], ids=["the network config.json records", "config.json damaged", "a linked lock"])
def test_an_export_reads_a_run_folder_only_as_its_own_records_describe_it(tmp_path, capsys, damage, message):
    """Found by a trial: export went ahead where config.json recorded another network, where it was not JSON, and
    without a lock where .lock was a link (analyze refused the last two)."""
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    (tmp_path / "elsewhere").write_text("not a lock")
    damage(out)
    capsys.readouterr()
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "m.onnx"), "--quiet"]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_a_run_stopped_between_its_best_and_its_last_checkpoint_resumes_and_is_analysed(tmp_path, capsys,
                                                                                         monkeypatch):
    """An epoch ends by saving best, then last: a run stopped between the two holds a best one epoch ahead of what
    last records of it. A review found it refused as another run's best; it is the run's own."""
    from meta_neighborhoods import training_state

    out, save = tmp_path / "run", training_state.TrainingState.save

    def stopped_before_last(state, last):  # once best holds an epoch after the first
        if state.epoch >= 2 and json.loads((out / "best.json").read_text())["epoch"] == state.epoch:
            raise KeyboardInterrupt
        return save(state, last)

    monkeypatch.setattr(training_state.TrainingState, "save", stopped_before_last)
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "6",
            "--batch-size", "64", "--train-subset", "200", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 130
    monkeypatch.setattr(training_state.TrainingState, "save", save)
    best, last = (json.loads((out / f"{name}.json").read_text()) for name in ("best", "last"))
    assert best["epoch"] == last["epoch"] + 1 and last["stateful"]["best"]["epoch"] < best["epoch"]
    assert runs.load_best_model(out)[1]["epoch"] == best["epoch"]  # analyze and export take it
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert (json.loads((out / "metrics.json").read_text())["test_accuracy"]
            == json.loads((tmp_path / "whole" / "metrics.json").read_text())["test_accuracy"])


def test_a_resume_refuses_another_run_s_split(tmp_path, capsys, monkeypatch):
    """Found by a trial: split.json of a run of another seed was kept as the resumed run's record (analyze reads
    it), while the resume trained on the images its own seed draws."""
    from meta_neighborhoods.experiments import classification

    out = _interrupted_vanilla_run(tmp_path / "run", monkeypatch)
    other = tmp_path / "other"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(other), "--device", "cpu", "--quiet",
                 "--seed", "1"]) == 0
    (out / "split.json").write_bytes((other / "split.json").read_bytes())
    trained = []
    monkeypatch.setattr(classification, "fit", lambda *args, **kwargs: trained.append(1))
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert "split.json lists other images than the run's seed and settings draw" in capsys.readouterr().err
    assert not trained


def test_an_edited_config_is_refused_before_the_network_is_built(tmp_path, capsys, monkeypatch):
    from meta_neighborhoods.experiments import classification

    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    config["dictionary_size"] = 10**9  # would ask for terabytes
    (out / "config.json").write_text(json.dumps(config))
    built = []
    monkeypatch.setattr(classification, "build_model", lambda **args: built.append(args))
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    assert "another configuration (dictionary_size: 100 there, 1000000000 here; model.dictionary_size" in (
        capsys.readouterr().err)
    assert not built


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_method_all_refuses_a_linked_method_folder_before_anything_is_removed_or_written(tmp_path, capsys,
                                                                                         overwrite):
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "run"
    elsewhere.mkdir()
    (out / "vanilla").mkdir(parents=True)
    for name in ("comparison.json", "config.json", "vanilla/metrics.json"):  # an earlier run's
        (out / name).write_text("{}")
    (out / "mn_ifilm").symlink_to(elsewhere)  # the last method's folder
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "all", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet",
                 *overwrite]) == 1
    assert "mn_ifilm is a link" in capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before and not any(elsewhere.iterdir())


def test_records_are_readable_by_others(tmp_path):
    """mkstemp makes private files; results on a shared machine are for others to read too."""
    import stat

    from meta_neighborhoods.io import write_json

    assert stat.S_IMODE(os.stat(write_json(tmp_path / "r.json", {"a": 1})).st_mode) == 0o644


def test_each_resume_is_added_to_the_run_record(tmp_path):
    from meta_neighborhoods.run_record import write_run_record

    write_run_record(tmp_path, {"seeds": {"seed": 0}})
    first = json.loads((tmp_path / "run.json").read_text())["provenance"]
    for _ in range(2):
        write_run_record(tmp_path, {"seeds": {"seed": 0}}, resume=True)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["provenance"] == first and len(saved["resumed"]) == 2


@pytest.mark.parametrize("method, folder", [("vanilla", "."), ("all", "."), ("all", "mn")])
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("beside", [None, "vanilla"], ids=["alone", "beside a run"])
def test_a_user_s_files_of_a_run_s_names_where_no_run_is_are_never_replaced(tmp_path, method, folder, overwrite,
                                                                            beside):
    """A metrics.csv of the user's own results is no run: without a run's config.json or checkpoint beside it,
    neither --overwrite nor a run of --method all (which writes into the method folders) replaces it, even where
    another folder of --out holds a run."""
    if beside and folder == "mn":
        (tmp_path / beside).mkdir()
        image_methods.save_checkpoint(tmp_path / beside / "last", torch.nn.Linear(1, 1), epoch=1)
    (tmp_path / folder).mkdir(exist_ok=True)
    for name in ("metrics.csv", "run.json"):
        (tmp_path / folder / name).write_text("mine")
    with pytest.raises(runs.RunFolderError, match=re.escape(
            f"{tmp_path / folder if folder != '.' else tmp_path} holds metrics.csv, run.json of the names a run "
            "writes, and no run's config.json or checkpoint: the run would replace them")):
        runs.claim(tmp_path, overwrite=overwrite, method=method)
    assert all((tmp_path / folder / name).read_text() == "mine" for name in ("metrics.csv", "run.json"))
    assert runs.holds_a_run(tmp_path) == (["vanilla"] if beside and folder == "mn" else [])


def test_overwrite_removes_only_the_event_files_of_a_tensorboard_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"method": "vanilla", "model": {}}')
    (tmp_path / "metrics.json").write_text("{}")
    board = tmp_path / "tensorboard"
    board.mkdir()
    (board / "events.out.tfevents.1.host").write_bytes(b"x")
    (board / "notes.txt").write_text("mine")
    runs.claim(tmp_path, overwrite=True, method="vanilla")
    assert not (board / "events.out.tfevents.1.host").exists() and (board / "notes.txt").read_text() == "mine"


def test_an_input_record_of_another_pixel_scale_is_refused(tmp_path):
    """Exports state the transform from run.json's inputs, whose scale is 255: another must not be relabelled."""
    from meta_neighborhoods.run_record import image_inputs, read_inputs, write_run_record

    write_run_record(tmp_path, {"input": image_inputs((0, 1, 8, 8), [0.5], [0.2]), "classes": ["a", "b"]})
    assert read_inputs(tmp_path)[1] == ["a", "b"]
    saved = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**saved, "input": {**saved["input"], "scale": 1}}))
    with pytest.raises(runs.RunFolderError, match="scale 255"):
        read_inputs(tmp_path)


def test_a_resume_keeps_the_provenance_of_the_process_that_started_the_run(tmp_path, monkeypatch):
    """Each process has its own provenance (its command line, its time): the run's own is the first process's, each
    resume is appended. Within one test process provenance() is the same every call, so it is told apart here."""
    calls = count()
    monkeypatch.setattr(run_record, "provenance", lambda: {"process": next(calls)})
    run_record.write_run_record(tmp_path, {"seeds": {"seed": 0}})
    for _ in range(2):
        run_record.write_run_record(tmp_path, {"seeds": {"seed": 0}}, resume=True)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["provenance"] == {"process": 0}
    assert saved["resumed"] == [{"process": 1}, {"process": 2}]


RESIZED = "resized to 16 x 16 pixels with Pillow's BOX filter (an area average)"


def _record_inputs(folder, pixels: str, classes=("a", "b")) -> None:
    inputs = run_record.image_inputs((1, 3, 16, 16), [0.5] * 3, [0.25] * 3, pixels)
    run_record.write_run_record(folder, {"classes": list(classes), "input": inputs})


@pytest.mark.parametrize("pixels", [RESIZED, "scikit-learn's load_digits counts 0..16, times 255 / 16, rounded half "
                                              "to even", ""])
def test_how_a_run_s_pixels_were_made_is_read_back_as_recorded(tmp_path, pixels):
    """export writes read_inputs' ``pixels`` into the ONNX graph: a resized or digits run's graph must say how its
    pixels were made, not that they are the files' own."""
    _record_inputs(tmp_path, pixels)
    inputs, classes = run_record.read_inputs(tmp_path)
    assert inputs["pixels"] == (pixels or run_record.OWN_PIXELS) and classes == ["a", "b"]


def test_a_run_record_of_an_older_version_says_its_pixels_were_not_recorded(tmp_path):
    """Not that they are the files' own: an older digits run scaled its counts too, and its graph would say to feed
    them raw."""
    _record_inputs(tmp_path, RESIZED)
    record = json.loads((tmp_path / "run.json").read_text())
    del record["input"]["pixels"]
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert run_record.read_inputs(tmp_path)[0]["pixels"] == run_record.UNRECORDED_PIXELS


def test_a_run_record_s_pixels_text_is_bounded(tmp_path):
    """The text goes into every exported graph's metadata: a run folder (untrusted) may not give a longer one than
    the loaders write."""
    longest = run_record.MAX_PIXELS_TEXT
    _record_inputs(tmp_path, "x" * longest)
    assert run_record.read_inputs(tmp_path)[0]["pixels"] == "x" * longest
    _record_inputs(tmp_path, "x" * (longest + 1))
    with pytest.raises(runs.RunFolderError, match=f"a text of at most {longest} characters"):
        run_record.read_inputs(tmp_path)


def test_a_run_config_written_before_image_size_was_recorded_reads_at_its_default(tmp_path):
    """A classify run of an earlier version recorded neither threads nor image_size; it trained at their defaults and
    is read (analyze, export, --resume) as such, not refused as 'not the configuration of a classify run'."""
    saved = dataclasses.asdict(ClassificationConfig("digits", "convnet4", "mn", epochs=2))
    del saved["image_size"], saved["threads"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = runs.read_config(tmp_path)
    assert (config.image_size, config.threads, config.image_options) == (None, None, {})


def test_a_resume_of_a_finished_run_says_it_only_tested_again(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
            "--batch-size", "64", "--train-subset", "128", "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    assert main(["classify", "--resume", str(out), "--device", "cpu"]) == 0
    assert f"{out} had finished training: nothing was left to train" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Files taking their places together, and folders read while no run writes them


def test_ctrl_c_while_a_run_s_files_take_their_places_arrives_after_them():
    import signal

    moved = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal: a background job ignores it
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals.deferred_signals():
                signal.raise_signal(signal.SIGINT)
                moved.append("every file")
        assert moved == ["every file"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError(28, "No space left on device")], ids=str)
def test_a_stage_that_raises_leaves_the_folder_as_it_was_and_one_that_ends_replaces_the_earlier_files(
        tmp_path, snapshot, error):
    (tmp_path / "old.json").write_text("earlier")
    (tmp_path / "kept.json").write_text("earlier")
    (tmp_path / ".staged.left_by_a_killed_run").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(type(error) if isinstance(error, BaseException) else error):
        with io.staged(tmp_path, ["old.json", "kept.json"]) as stage:
            (stage / "kept.json").write_text("new")
            raise error
    assert snapshot(tmp_path) == {name: digest for name, digest in before.items() if "killed" not in name}
    with io.staged(tmp_path, ["old.json", "kept.json"]) as stage:
        (stage / "table").mkdir()
        (stage / "table" / "results.json").write_text("new")
        (stage / "kept.json").write_text("new")
        assert not (tmp_path / "table").exists() and (tmp_path / "kept.json").read_text() == "earlier"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["kept.json", "table",
                                                                                 "table/results.json"]


def test_a_run_s_records_take_their_places_after_its_other_files(tmp_path, monkeypatch):
    """A run killed among the renames must not show a run (results.json) over an earlier run's other files: the
    marks of RUN_KINDS are renamed last."""
    order, replace = [], os.replace

    def recorded(source, target):
        order.append(Path(target).name)
        replace(source, target)

    monkeypatch.setattr(io.os, "replace", recorded)
    with io.staged(tmp_path) as stage:
        (stage / "results.json").write_text("{}")
        (stage / "table").mkdir()
        (stage / "table" / "summary.md").write_text("x")
        (stage / "z.csv").write_text("x")
    assert sorted(order) == ["results.json", "summary.md", "z.csv"] and order[-1] == "results.json"


def test_the_lock_file_names_its_holder_alone(tmp_path):
    """An earlier, longer text in the lock file stayed after this holder's, and a refusal quoted both."""
    (tmp_path / io.LOCK).write_text("process 1 (" + "x" * 500 + ")")
    with io.lock(tmp_path):
        text = (tmp_path / io.LOCK).read_text()
    assert text.startswith(f"process {os.getpid()} (") and "xxxxx" not in text


def test_a_folder_is_read_only_while_no_run_writes_it_and_a_writer_waits_for_its_readers(tmp_path):
    with io.lock(tmp_path):
        with pytest.raises(io.RunFolderError, match=rf"{tmp_path} is being written by process {os.getpid()} "):
            with io.reading(tmp_path):
                pass
    with io.reading(tmp_path), io.reading(tmp_path):  # readers share the folder
        with pytest.raises(io.RunFolderError, match=rf"{tmp_path} is being read by another process"):
            with io.lock(tmp_path):
                pass
    with io.reading(tmp_path / "never_written"):  # no lock file: nothing of ours writes there
        pass
    import fcntl

    (tmp_path / io.LOCK).write_text("process 1 " + "x" * 10_000_000)  # a folder's lock file is untrusted
    with open(tmp_path / io.LOCK) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(io.RunFolderError, match="is being written by process 1 x") as error, io.reading(tmp_path):
            pass
    assert len(str(error.value)) < 500


def test_a_writer_that_waits_takes_the_lock_once_its_holder_lets_go(tmp_path):
    """The processes of one sweep write a folder in turn (``wait``); any other writer is refused at once."""
    import threading

    taken, release, order = threading.Event(), threading.Event(), []

    def holder():
        with io.lock(tmp_path):
            taken.set()
            release.wait(10)
            order.append("released")
    thread = threading.Thread(target=holder)
    thread.start()
    taken.wait(10)
    with pytest.raises(io.RunFolderError, match="is being written by process"), io.lock(tmp_path):
        pass
    threading.Timer(0.2, release.set).start()
    with io.lock(tmp_path, wait=True):
        order.append("waited")
    thread.join(10)
    assert order == ["released", "waited"]

def test_a_write_that_fails_without_naming_a_file_is_named_and_a_read_only_folder_is_said_as_such(tmp_path,
                                                                                                 monkeypatch):
    """A full disk said "[Errno 28] No space left on device" of no file, or of the hidden temporary file (gone when
    the user reads it), or of the run's hidden stage; a read-only folder's lock was called a bad lock file to
    remove."""
    import errno

    for named in (lambda tmp: None, lambda tmp: tmp):
        def full(tmp):
            raise OSError(errno.ENOSPC, "No space left on device", named(tmp))

        with pytest.raises(OSError, match=rf"No space left on device: '{tmp_path / 'results.json'}'"):
            io.atomic_write(tmp_path / "results.json", full)
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match=rf"No such file or directory: '{Path('/proc') / 'x.csv'}'$"):  # not its stage's
        io.atomic_write("/proc/x.csv", lambda tmp: None)  # a folder that takes no file
    with pytest.raises(OSError, match=rf"No space left on device: '{tmp_path / 'table' / 'a.png'}'"):
        with io.staged(tmp_path) as stage:
            raise OSError(errno.ENOSPC, "No space left on device", str(stage / "table" / "a.png"))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(io.os, "open", read_only)
    with pytest.raises(io.RunFolderError, match=rf"^cannot write in {tmp_path} \(Read-only file system\)$"):
        with io.lock(tmp_path):
            pass


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_file_written_meanwhile_is_replaced_only_when_asked(tmp_path, monkeypatch, links):
    """predict and export check --out before their work and write after it: a file the user (or a second run into
    the same --out) wrote meanwhile was replaced without --overwrite."""
    target = tmp_path / "p.csv"
    if not links:
        monkeypatch.setattr(io.os, "link", lambda *args: (_ for _ in ()).throw(OSError(1, "Operation not permitted")))

    def meanwhile(tmp):
        Path(tmp).write_text("ours\n")
        target.write_text("the user's\n")

    with pytest.raises(FileExistsError, match="p.csv was written by something else while this ran: replace it with"):
        io.atomic_write(target, meanwhile, replace=False)
    assert target.read_text() == "the user's\n" and [p.name for p in tmp_path.iterdir()] == ["p.csv"]
    io.atomic_write(target, meanwhile, replace=True)
    assert target.read_text() == "ours\n" and [p.name for p in tmp_path.iterdir()] == ["p.csv"]
    target.unlink()
    io.atomic_write(target, lambda tmp: Path(tmp).write_text("new\n"), replace=False)
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_a_stop_as_the_stage_is_made_leaves_no_stage(tmp_path, monkeypatch):
    """A clean clone's CI sent SIGTERM as a spiral run's stage appeared: the folder the run had made for itself
    stayed, holding the stage made before the block that removes it was entered."""
    import signal
    import tempfile

    made = tempfile.mkdtemp

    def and_a_stop(*args, **kwargs):
        folder = made(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return folder

    monkeypatch.setattr(io.tempfile, "mkdtemp", and_a_stop)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: a test worker may ignore it
    try:
        with pytest.raises(KeyboardInterrupt):
            with io.staged(tmp_path):
                pytest.fail("the block ran")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert list(tmp_path.iterdir()) == []


def test_a_run_interrupted_before_its_first_epoch_is_started_again_by_its_own_command(tmp_path, monkeypatch):
    """With --overwrite once, where the command gave it already."""
    from meta_neighborhoods.commands.classify import _how_to_continue

    argv = ["meta-neighborhoods", "classify", "--dataset", "digits", "--out", str(tmp_path / "a b"), "--overwrite"]
    monkeypatch.setattr(sys, "argv", argv)
    assert _how_to_continue(tmp_path / "a b", {}).endswith(f"start again with: {shlex.join(argv)}")


def test_an_overwrite_removes_the_analyses_first_and_what_marks_the_run_last(tmp_path, monkeypatch):
    """So that an interrupted removal leaves a run, never analyses without it (which a new run there refuses)."""
    names = ["best.json", "config.json", "cosine.json", "metrics.json", "split.json", "tsne.json", "tsne.png"]
    for name in names:
        (tmp_path / name).write_text("{}")
    removed = []
    unlink = Path.unlink
    monkeypatch.setattr(Path, "unlink", lambda path, **kwargs: (removed.append(path.name), unlink(path, **kwargs)))
    runs._remove(tmp_path, names)
    assert set(removed[:3]) == {"cosine.json", "tsne.json", "tsne.png"}
    assert set(removed[3:5]) == {"metrics.json", "split.json"} and set(removed[5:]) == {"best.json", "config.json"}


def test_a_process_lost_under_torchrun_names_the_loss_and_how_to_resume(tmp_path, capsys, monkeypatch):
    """A trial killed rank 1: rank 0 said gloo's line alone ('[.../pair.cc:537] Read error ... GLHF!'), where the
    run could be resumed from its last checkpoint, as after Ctrl-C."""
    from meta_neighborhoods.experiments import classification

    out = tmp_path / "run"

    def lost(*args, **kwargs):
        (out / "last").parent.mkdir(parents=True)
        image_methods.save_checkpoint(out / "last", torch.nn.Linear(1, 1), epoch=1)
        raise RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed "
                           "by peer [127.0.0.1]:31431. This is typically caused by a remote worker crashing. GLHF!")

    monkeypatch.setattr(classification, "run_classification", lost)
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn", "--out", str(out),
                 "--quiet"]) == 1
    assert capsys.readouterr().err == (
        "meta-neighborhoods classify: error: another process of the run stopped (Connection closed by peer "
        f"[127.0.0.1]:31431); the last checkpoint is kept; continue with: {shlex.join(PYTHON_M)} classify --resume "
        f"{out}\n")  # called by a program (main(argv)): as python -m
    def failed(*args, **kwargs):  # another runtime error: as it was
        raise RuntimeError("out of memory")

    monkeypatch.setattr(classification, "run_classification", failed)
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn", "--out",
                 str(tmp_path / "other"), "--quiet"]) == 1
    assert capsys.readouterr().err == "meta-neighborhoods classify: error: out of memory\n"
