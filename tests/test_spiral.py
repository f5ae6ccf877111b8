"""The two-spiral toy end to end, at a reduced budget that CI can afford."""

import json

import numpy as np
import pytest
import torch

import meta_neighborhoods

from meta_neighborhoods.cli import main
from meta_neighborhoods.datasets.spiral import make_spirals


def test_spirals_are_two_mirrored_arms():
    points, labels = make_spirals(n_per_class=50, seed=3)
    assert points.shape == (100, 2) and labels.tolist() == [0] * 50 + [1] * 50
    np.testing.assert_array_equal(points[50:], -points[:50])  # class 1 is class 0 through the origin
    radius = np.hypot(*points[:50].T)  # a bit over two turns: the radius grows with the angle up to 780 degrees
    assert radius.max() < 780 * 2 * np.pi / 360 + 0.5 * np.sqrt(2) and radius.max() > 10
    other_points, _ = make_spirals(n_per_class=50, seed=4)
    assert not np.allclose(points, other_points)
    np.testing.assert_array_equal(points, make_spirals(n_per_class=50, seed=3)[0])


def test_spiral_command_separates_what_a_linear_model_cannot(tmp_path):
    out = tmp_path / "spiral"
    assert main(["spiral", "--out", str(out), "--epochs", "40", "--quiet", "--no-animation", "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    accuracy = metrics["test_accuracy"]
    assert accuracy["meta_neighborhoods"] >= 0.97
    assert accuracy["vanilla"] < 0.75
    assert metrics["config"]["dictionary_size"] == 100 and metrics["config"]["temperature"] == 0.1
    assert (out / "spiral.png").stat().st_size > 10_000
    record = json.loads((out / "run.json").read_text())  # provenance, seeds, and the inputs the models expect
    assert record["provenance"]["meta_neighborhoods"] == meta_neighborhoods.__version__
    assert record["seeds"] == {"seed": 0, "train_spirals": 0, "test_spirals": 1, "torch": 0, "batches": 0}
    train, _ = make_spirals(n_per_class=metrics["config"]["n_per_class"], noise=metrics["config"]["noise"], seed=0)
    np.testing.assert_allclose(record["input"]["mean"], train.mean(0))
    np.testing.assert_allclose(record["input"]["std"], train.std(0))
    assert "run.json" in metrics["files"]


def test_the_figure_s_snapshots_run_from_the_initialisation_to_the_last_epoch(tmp_path, monkeypatch):
    """Fig. 3 shows the keys and the decision regions as training moves them: its first panel is the untrained
    model (epoch 0), its last the trained one, with one set of keys per panel."""
    from meta_neighborhoods.experiments import spiral

    drawn = []
    monkeypatch.setattr(spiral, "spiral_figure", lambda path, points, frames, trajectory, labels, **kwargs:
                        drawn.append((frames, trajectory)))
    config = spiral.SpiralConfig(epochs=6, snapshots=4, n_per_class=50, animation=False)
    metrics = spiral.run_spiral(tmp_path / "run", config, progress=False)
    (frames, trajectory), = drawn
    assert [epoch for epoch, _, _ in frames] == [0, 2, 4, 6]  # linspace(0, 6, 4), rounded
    assert len(trajectory) == len(frames) and frames[-1][1] == metrics["test_accuracy"]["meta_neighborhoods"]


def test_spiral_command_refuses_a_folder_holding_a_run_unless_overwrite(tmp_path, capsys):
    out, argv = tmp_path / "spiral", ["spiral", "--epochs", "2", "--quiet", "--no-animation", "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 0
    before = (out / "metrics.json").read_text()
    assert main([*argv, "--out", str(out), "--seed", "1"]) == 1
    assert f"{out} already holds a run (metrics.json, run.json)" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before
    assert main([*argv, "--out", str(out), "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 1


def test_a_run_whose_figure_was_moved_away_can_still_be_overwritten(tmp_path, capsys):
    """Its records alone were taken for a user's own files, beside no figure: refused even with --overwrite."""
    out, argv = tmp_path / "spiral", ["spiral", "--epochs", "2", "--quiet", "--no-animation", "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 0
    (out / "spiral.png").rename(tmp_path / "for-the-paper.png")
    assert main([*argv, "--out", str(out), "--seed", "1"]) == 1
    assert f"{out} already holds a run (metrics.json, run.json)" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 1


def test_an_overwritten_run_leaves_none_of_its_files_that_the_new_run_does_not_write(tmp_path):
    out, argv = tmp_path / "spiral", ["spiral", "--epochs", "2", "--quiet", "--device", "cpu", "--out"]
    assert main([*argv, str(out)]) == 0 and (out / "spiral.gif").is_file()
    assert main([*argv, str(out), "--no-animation", "--overwrite"]) == 0
    files = json.loads((out / "metrics.json").read_text())["files"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(["metrics.json", *files])


def test_a_device_this_machine_lacks_is_refused_before_the_output_folder_is_made(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["spiral", "--device", "cuda", "--quiet", "--out", str(tmp_path / "run")]) == 1
    assert "this machine has 0 CUDA GPU(s)" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_spiral_command_reports_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["spiral", "--out", str(blocker / "run"), "--quiet"]) == 1
    assert "cannot write to output directory" in capsys.readouterr().err


def test_help_lists_the_spiral_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "spiral" in capsys.readouterr().out


def test_an_interrupted_run_leaves_nothing_that_refuses_its_folder(tmp_path, monkeypatch):
    from meta_neighborhoods.experiments import spiral

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(spiral, "_train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        spiral.run_spiral(tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # the folder it created, removed: a rerun needs no --overwrite
    monkeypatch.undo()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "spiral.png").write_bytes(b"killed while drawing the animation")  # it was refused for this
    config = spiral.SpiralConfig(epochs=1, animation=False)
    assert spiral.run_spiral(tmp_path / "run", config, progress=False)["files"] == ["spiral.png", "run.json"]
    assert (tmp_path / "run" / "spiral.png").stat().st_size > 10_000


def test_a_run_that_fails_to_write_leaves_the_earlier_one_whole(tmp_path, monkeypatch, snapshot):
    """--overwrite removed the earlier run's files before the new one wrote its own: a figure that could not be
    written (a full disk) left an empty folder."""
    import matplotlib.figure

    from meta_neighborhoods.experiments import spiral

    config = spiral.SpiralConfig(epochs=1, animation=False)
    spiral.run_spiral(tmp_path / "run", config, progress=False)
    earlier = snapshot(tmp_path / "run")

    def full(figure, tmp, **kwargs):
        raise OSError(28, "No space left on device", tmp)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(OSError, match=rf"^\[Errno 28\] No space left on device: '{tmp_path / 'run' / 'spiral.png'}'$"):
        spiral.run_spiral(tmp_path / "run", config, progress=False, overwrite=True)
    assert snapshot(tmp_path / "run") == earlier  # and the message names the figure, not the hidden stage's file
