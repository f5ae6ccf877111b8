"""provenance(): the versions, platform, git commit and command line a run folder records."""

import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas
import pytest
import scipy
import sklearn
import torch

import meta_neighborhoods
from meta_neighborhoods import provenance as module
from meta_neighborhoods.provenance import git_state, provenance

PACKAGE = Path(meta_neighborhoods.__file__).resolve().parent


def test_the_record_is_json_and_names_every_version(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["meta-neighborhoods", "classify", "--dataset", "digits"])
    record = json.loads(json.dumps(provenance()))
    assert record["meta_neighborhoods"] == meta_neighborhoods.__version__
    assert (record["torch"], record["numpy"]) == (torch.__version__, np.__version__)
    assert record["python"] == platform.python_version() and record["platform"] == platform.platform()
    assert record["command"] == ["meta-neighborhoods", "classify", "--dataset", "digits"]
    assert record["working_directory"] == str(Path.cwd())  # where the command's relative paths start
    assert (record["scikit-learn"], record["scipy"], record["pandas"]) == (sklearn.__version__, scipy.__version__,
                                                                           pandas.__version__)
    assert {"git_commit", "git_dirty", "cuda", "time"} <= set(record)


def test_a_run_started_with_python_m_records_a_command_that_runs_again(monkeypatch):
    """``python -m meta_neighborhoods`` leaves the package's __main__.py in sys.argv[0], which cannot run alone."""
    main_file = str(Path(meta_neighborhoods.__file__).with_name("__main__.py"))
    monkeypatch.setattr(sys, "argv", [main_file, "spiral", "--epochs", "2"])
    assert provenance()["command"] == [sys.executable, "-m", "meta_neighborhoods", "spiral", "--epochs", "2"]


def test_a_program_calling_the_command_line_records_its_arguments_not_its_own_command_line(monkeypatch):
    """``cli.main(argv)`` from a notebook had recorded the notebook kernel's command line as the run's command, and
    printed it as the command to resume with after Ctrl-C."""
    from meta_neighborhoods.launch import called_with

    monkeypatch.setattr(sys, "argv", ["/venv/bin/ipykernel_launcher.py", "-f", "kernel.json"])
    with called_with(["spiral", "--epochs", "2"]):
        assert provenance()["command"] == [sys.executable, "-m", "meta_neighborhoods", "spiral", "--epochs", "2"]
        for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(name, value)
        assert provenance()["command"] == ["torchrun", "--nnodes=1", "--nproc-per-node=2", "-m", "meta_neighborhoods",
                                           "spiral", "--epochs", "2"]
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name)
    assert provenance()["command"] == sys.argv  # the call over: this process's own command line again


@pytest.mark.parametrize("module", [True, False])
def test_a_run_torchrun_launched_records_its_launch(monkeypatch, module):
    """The command recorded under torchrun ran on one process: another result, said nowhere."""
    script = str(Path(meta_neighborhoods.__file__).with_name("__main__.py")) if module else "/venv/bin/meta-neighborhoods"
    monkeypatch.setattr(sys, "argv", [script, "classify", "--dataset", "digits"])
    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    launch = ["-m", "meta_neighborhoods"] if module else [script]
    assert provenance()["command"] == ["torchrun", "--nnodes=2", "--nproc-per-node=2", *launch, "classify",
                                       "--dataset", "digits"]


def test_the_record_names_the_source_that_ran_outside_a_clone_too(tmp_path):
    """Outside a git clone the code was named only by its version, 0.1.0 since the first commit."""
    from meta_neighborhoods.provenance import source_sha256

    package = Path(meta_neighborhoods.__file__).parent
    copy = shutil.copytree(package, tmp_path / "meta_neighborhoods", ignore=shutil.ignore_patterns("__pycache__"))
    record = provenance()
    assert record["source_sha256"] == source_sha256(copy) and re.fullmatch("[0-9a-f]{64}", record["source_sha256"])
    (copy / "config.py").write_text((copy / "config.py").read_text().replace("4096", "512"))
    assert source_sha256.__wrapped__(copy) != record["source_sha256"]  # computed again, not the cached digest
    assert record["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)


def test_a_library_that_is_not_installed_is_recorded_as_none(monkeypatch):
    monkeypatch.setattr(module, "LIBRARIES", ("no-such-distribution-here",))
    assert provenance()["no-such-distribution-here"] is None


def test_the_record_names_the_thread_count_a_rerun_needs():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert provenance()["threads"] == 1
    finally:
        torch.set_num_threads(threads)
    assert provenance()["threads"] == threads


def _clone_head() -> str | None:
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "-C", str(PACKAGE), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def test_the_commit_of_the_clone_the_package_is_imported_from():
    head = _clone_head()
    if head is None:
        pytest.skip("the package is not imported from a git clone here")
    commit, dirty = git_state()
    assert commit == head and isinstance(dirty, bool)


def _clone_of_the_package(tmp_path, monkeypatch) -> tuple[Path, Callable]:
    """A one-commit git clone that provenance takes for the package's own, and a function running git in it."""
    if shutil.which("git") is None:
        pytest.skip("no git here")
    clone = tmp_path / "clone"
    (clone / "pkg").mkdir(parents=True)
    (clone / "pkg" / "__init__.py").write_text("")

    def git(*args):
        return subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.setattr(module, "__file__", str(clone / "pkg" / "provenance.py"))
    return clone, git


def test_a_changed_tracked_file_marks_the_clone_dirty(tmp_path, monkeypatch):
    clone, git = _clone_of_the_package(tmp_path, monkeypatch)
    head = git("rev-parse", "HEAD").strip()
    assert git_state() == (head, False)
    (clone / "pkg" / "__init__.py").write_text("# changed\n")
    assert git_state() == (head, True)


def test_files_git_does_not_track_leave_the_clone_clean(tmp_path, monkeypatch):
    """Run folders and notes inside a clone are untracked: the code that ran is the commit's, not 'dirty'."""
    clone, git = _clone_of_the_package(tmp_path, monkeypatch)
    (clone / "runs" / "yacht").mkdir(parents=True)
    (clone / "runs" / "yacht" / "results.json").write_text("{}")
    (clone / "pkg" / "scratch.py").write_text("x = 1\n")
    assert git_state() == (git("rev-parse", "HEAD").strip(), False)


def test_outside_a_clone_there_is_no_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(module, "__file__", str(tmp_path / "provenance.py"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state() == (None, None)
    assert provenance()["git_commit"] is None


@pytest.mark.parametrize("failure", [FileNotFoundError("git"), subprocess.TimeoutExpired("git", 5.0)],
                         ids=["git-missing", "git-hangs"])
def test_a_missing_or_hung_git_gives_none_not_an_error(monkeypatch, failure):
    def run(*args, **kwargs):
        raise failure

    monkeypatch.setattr(subprocess, "run", run)
    assert git_state() == (None, None)


def test_the_source_digest_names_each_file_by_its_path(tmp_path):
    """A module moved or renamed, its bytes unchanged, is other code (another import path): the digest covers each
    file's path with its bytes."""
    from meta_neighborhoods.provenance import source_sha256

    digests = []
    for name in ("mlp.py", "linear.py"):
        root = tmp_path / name.removesuffix(".py")
        (root / "heads").mkdir(parents=True)
        (root / "heads" / name).write_bytes(b"N = 1\n")
        digests.append(source_sha256.__wrapped__(root))
    assert digests[0] != digests[1]
