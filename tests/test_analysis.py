"""The analyze command (Figs. 4-6): t-SNE of keys, cosine to the true prototype before/after finetuning, retrieval."""

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.image import imread

from meta_neighborhoods import runs
from meta_neighborhoods.cli import main
from meta_neighborhoods.datasets.batches import ImageBatches
from meta_neighborhoods.datasets.images import ImageSplit, load_image_dataset
from meta_neighborhoods.experiments.analysis import analyze_cosine, analyze_tsne, load_run, run_analysis, select_keys
from meta_neighborhoods.experiments.classification import run_classification
from meta_neighborhoods.image_methods import build_model, save_checkpoint
from meta_neighborhoods.io import sha256
from meta_neighborhoods.runs import load_best_model

SAMPLES = 120


@pytest.fixture(scope="module")
def mn_run(tmp_path_factory):
    """A tiny Meta-Neighborhoods run: convnet4 on digits, 2 epochs (batch 32, as in test_classification)."""
    out = tmp_path_factory.mktemp("analysis") / "mn"
    run_classification("digits", "convnet4", "mn", out, epochs=2, batch_size=32, device="cpu", progress=False)
    return out


@pytest.fixture(scope="module")
def analysed(mn_run, tmp_path_factory):
    """``analyze --what all`` through the command line, into a separate folder."""
    out = tmp_path_factory.mktemp("analysis") / "figures"
    argv = ["analyze", "--run", str(mn_run), "--what", "all", "--samples", str(SAMPLES), "--seed", "3",
            "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    return out


def _model(run_dir):
    return load_best_model(run_dir)[0]


@torch.no_grad()
def _test_features(model, indices):
    """Features of the given test images, computed here without the analysis module."""
    dataset = load_image_dataset("digits")
    split = ImageSplit(dataset.test.images[indices], dataset.test.labels[indices])
    return torch.cat([model.features(x) for x, _ in ImageBatches(split, dataset.mean, dataset.std, batch_size=64)])


def test_all_writes_each_figure_with_its_numbers(analysed, mn_run, capsys):
    for name in ("tsne", "cosine", "retrieval"):
        png = imread(analysed / f"{name}.png")
        assert png.ndim == 3 and min(png.shape[:2]) > 100
        result = json.loads((analysed / f"{name}.json").read_text())
        assert result["files"] == [f"{name}.png", f"{name}.json"]
        config = result["config"]
        assert (config["analysis"], config["run"], config["samples"], config["seed"]) == (name, str(mn_run), SAMPLES, 3)
        assert config["checkpoint_sha256"] == sha256(mn_run / "best.json")  # which of the run's checkpoints
        assert (config["dataset"], config["method"]) == ("digits", "mn")
        assert {"command", "git_commit", "torch", "meta_neighborhoods"} <= set(config["provenance"])  # versions
    assert not (mn_run / "tsne.json").exists(), "--out must be honoured"


def test_tsne_embeds_the_sampled_features_and_every_key(analysed):
    result = json.loads((analysed / "tsne.json").read_text())
    assert result["train_images"] == SAMPLES and result["dictionary_size"] == 100
    assert result["config"]["normalised"] is True  # mn's attention is cosine: unit features and keys are embedded
    train, keys = result["train"], result["keys"]
    assert len(train["indices"]) == len(train["labels"]) == len(train["xy"]) == SAMPLES
    assert len(keys["labels"]) == len(keys["xy"]) == len(keys["max_value"]) == 100
    assert np.isfinite(train["xy"]).all() and np.isfinite(keys["xy"]).all()
    assert all(0 <= c < 10 for c in keys["labels"]) and all(0.1 <= v <= 1 for v in keys["max_value"])
    for share in ("key_nearest_same_class_share", "key_nearest_same_class_share_feature_space"):
        assert 0.0 <= result[share] <= 1.0
    # the share, recomputed from the written coordinates
    train_xy, key_xy = np.array(train["xy"]), np.array(keys["xy"])
    nearest = ((key_xy[:, None] - train_xy[None]) ** 2).sum(-1).argmin(1)
    assert result["key_nearest_same_class_share"] == pytest.approx(
        np.mean(np.array(train["labels"])[nearest] == np.array(keys["labels"])))


def test_cosine_before_is_the_cosine_to_the_head_prototype_of_the_true_class(analysed, mn_run):
    result = json.loads((analysed / "cosine.json").read_text())
    assert result["test_images"] == SAMPLES == len(result["before"]) == len(result["after"])
    model = _model(mn_run)
    z = _test_features(model, np.array(result["indices"]))
    labels = torch.tensor(result["labels"])
    direct = F.cosine_similarity(z, model.head.weight.detach().T[labels], dim=1)
    np.testing.assert_allclose(result["before"], direct.numpy(), atol=1e-5)
    with torch.no_grad():  # after: the adapted head's cosine logit of the true class, without its scale
        adapted = model.eval().predict_features(z)[torch.arange(len(z)), labels] / model.head.scale
    np.testing.assert_allclose(result["after"], adapted.numpy(), atol=1e-5)
    assert np.abs(np.subtract(result["after"], result["before"])).max() > 1e-3  # the adaptation moved them
    assert np.all(np.abs(result["after"]) <= 1 + 1e-6)
    assert result["mean_before"] == pytest.approx(np.mean(result["before"]))
    assert result["mean_after"] == pytest.approx(np.mean(result["after"]))
    change = np.array(result["after"]) - result["before"]
    assert result["share_above_diagonal"] == pytest.approx(np.mean(change > result["diagonal_tolerance"]))
    assert result["share_below_diagonal"] == pytest.approx(np.mean(change < -result["diagonal_tolerance"]))
    shares = ("share_above_diagonal", "share_below_diagonal", "share_on_diagonal")
    assert sum(result[key] for key in shares) == pytest.approx(1.0)
    for key in (*shares, "accuracy_before", "accuracy_after"):
        assert 0.0 <= result[key] <= 1.0


def test_cosine_accuracy_after_adaptation_is_the_runs_test_accuracy(mn_run, tmp_path):
    """On every test image the adapted head is the model itself: its accuracy is the one classify reported."""
    result = analyze_cosine(load_run(mn_run, device="cpu"), tmp_path)
    metrics = json.loads((mn_run / "metrics.json").read_text())
    assert result["test_images"] == metrics["images"]["test"]
    assert result["accuracy_after"] == pytest.approx(metrics["test_accuracy"])


def test_retrieval_finds_the_nearest_test_images_of_two_keys_per_class(analysed, mn_run):
    result = json.loads((analysed / "retrieval.json").read_text())
    model = _model(mn_run)
    values = model.dictionary.values().detach()
    per_class = np.bincount(values.argmax(1).numpy(), minlength=10)
    rows = min(20, int(np.minimum(per_class, 2).sum()))
    assert len(result["keys"]) == rows and result["grid"] == [rows, 5]
    assert [r["value_class"] for r in result["keys"]] == sorted(r["value_class"] for r in result["keys"])
    dataset = load_image_dataset("digits")
    pool = np.sort(np.random.default_rng(3).choice(len(dataset.test), SAMPLES, replace=False))
    z = _test_features(model, pool)
    for row in result["keys"]:
        key = model.dictionary.keys.detach()[row["key"]]
        assert row["value_class"] == values[row["key"]].argmax().item()
        order = torch.argsort(F.cosine_similarity(z, key[None], dim=1), descending=True)[:5]
        assert row["indices"] == pool[order.numpy()].tolist()
        assert row["labels"] == dataset.test.labels[row["indices"]].tolist()
        assert row["same_class_share"] == np.mean(np.array(row["labels"]) == row["value_class"])
    assert 0.0 <= result["same_class_share"] <= 1.0
    assert result["same_class_share"] == pytest.approx(np.mean([r["same_class_share"] for r in result["keys"]]))


def test_all_keys_gives_one_row_per_key(mn_run, tmp_path):
    argv = ["analyze", "--run", str(mn_run), "--what", "retrieval", "--all-keys", "--samples", "60",
            "--out", str(tmp_path), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "retrieval.json").read_text())
    assert result["grid"] == [100, 5] and sorted(r["key"] for r in result["keys"]) == list(range(100))
    assert imread(tmp_path / "retrieval.png").shape[0] > 5000  # a tall grid: 100 rows of images
    assert main([*argv, "--keys-per-class", "3"]) == 2  # it had been ignored without a word
    cosine = [option if option != "retrieval" else "cosine" for option in argv]
    per_class = [*(option for option in cosine if option != "--all-keys"), "--keys-per-class", "3"]
    assert main(cosine) == 2 and main(per_class) == 2  # options of a figure that --what cosine does not draw


def _vanilla_run(path):
    """A vanilla run folder as classify leaves it (checkpoint with its model_args, config.json); no data needed."""
    path.mkdir()
    args = {"method": "vanilla", "backbone": "convnet4", "in_channels": 1, "num_classes": 10, "dictionary_size": 0}
    save_checkpoint(path / "best", build_model(**args), model_args=args, epoch=1, validation_accuracy=0.5)
    (path / "config.json").write_text(json.dumps({"dataset": "digits", "method": "vanilla", "model": args}))
    return path


def test_a_vanilla_run_is_refused_with_a_clear_message(tmp_path, capsys, user_folder):
    run = _vanilla_run(tmp_path / "vanilla")
    before = sorted(p.name for p in run.iterdir())
    assert main(["analyze", "--run", str(run), "--what", "all", "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "'vanilla' run: it has no dictionary of learned neighbours" in error
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    with pytest.raises(ValueError, match="no dictionary"):
        run_analysis(run, "tsne")
    elsewhere = user_folder("elsewhere")
    assert main(["analyze", "--run", str(run), "--what", "all", "--out", str(elsewhere), "--quiet"]) == 1
    assert not any(elsewhere.iterdir())  # refused before any work


def test_unknown_analysis_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--run", str(tmp_path), "--what", "umap"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'umap'" in capsys.readouterr().err


def test_a_missing_run_folder_or_checkpoint_is_reported(tmp_path, capsys):
    assert main(["analyze", "--run", str(tmp_path / "nope"), "--what", "cosine", "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()
    (tmp_path / "afile").write_text("not a run")
    assert main(["analyze", "--run", str(tmp_path / "afile"), "--what", "cosine", "--quiet"]) == 1
    assert f"run folder {tmp_path / 'afile'} is not a folder" in capsys.readouterr().err
    (tmp_path / "afile").unlink()
    (tmp_path / "config.json").write_text("{}")
    assert main(["analyze", "--run", str(tmp_path), "--what", "cosine", "--quiet"]) == 1
    assert "best.json is missing" in capsys.readouterr().err
    assert main(["analyze", "--run", str(tmp_path), "--what", "cosine", "--samples", "0", "--quiet"]) == 2
    assert "samples must be a positive integer" in capsys.readouterr().err
    assert main(["analyze", "--run", str(tmp_path), "--what", "retrieval", "--keys-per-class", "0", "--quiet"]) == 2
    assert "keys_per_class must be a positive integer" in capsys.readouterr().err


def test_select_keys_orders_by_class_and_confidence():
    classes = np.array([2, 0, 0, 1, 0, 2])
    confidence = np.array([0.5, 0.3, 0.9, 0.4, 0.6, 0.7])
    assert select_keys(classes, confidence, 2, 20).tolist() == [2, 4, 3, 5, 0]
    assert select_keys(classes, confidence, 2, 3).tolist() == [2, 4, 3]
    assert select_keys(classes, confidence, None, None).tolist() == [2, 4, 1, 3, 5, 0]


def test_an_out_holding_analyses_or_another_run_is_refused_before_any_work(mn_run, analysed, tmp_path, capsys):
    analysed = shutil.copytree(analysed, tmp_path / "figures")  # the module's own stay as they are
    before = {p.name: p.read_bytes() for p in analysed.iterdir()}
    argv = ["analyze", "--run", str(mn_run), "--what", "cosine", "--samples", str(SAMPLES), "--device", "cpu",
            "--quiet"]
    assert main([*argv, "--out", str(analysed)]) == 1
    assert "already holds analyses (tsne.png, tsne.json, cosine.png, cosine.json): replace them with --overwrite" \
        in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in analysed.iterdir()} == before
    other = tmp_path / "other run"
    shutil.copytree(mn_run, other, ignore=shutil.ignore_patterns("*.png", "*.json", "*.safetensors", "tensorboard"))
    # a run's file: the analyses would pass for its own
    (other / "config.json").write_text('{"method": "mn", "meta_neighborhoods": {}}')
    for extra in ([], ["--overwrite"]):
        assert main([*argv, "--out", str(other), *extra]) == 1
        assert "holds another classify run (config.json" in capsys.readouterr().err
    assert not (other / "cosine.json").exists()
    assert main([*argv, "--out", str(analysed), "--overwrite"]) == 0
    assert (analysed / "cosine.json").read_bytes() != before["cosine.json"]  # another sample: another config
    # the analyses of the run that were there and that this one did not make went: none passes for another run's
    assert sorted(p.name for p in analysed.iterdir() if p.name != ".lock") == ["cosine.json", "cosine.png"]


def test_an_analysis_into_a_folder_another_process_is_writing_fails_at_once_naming_it(mn_run, tmp_path, capsys):
    """analyze took no lock: it wrote its figures into a run folder a classify run was writing. Now the folder it
    writes (the run's, or another --out) is locked as a classify run's is, and a holder is named before it writes."""
    run, out = shutil.copytree(mn_run, tmp_path / "run"), tmp_path / "figures"
    out.mkdir()
    argv = ["analyze", "--run", str(run), "--what", "cosine", "--samples", str(SAMPLES), "--device", "cpu", "--quiet"]
    for folder, extra in ((run, []), (out, ["--out", str(out)])):
        with runs.lock(folder):
            before = sorted(path.name for path in folder.iterdir())
            assert main([*argv, *extra]) == 1
        err = capsys.readouterr().err
        assert f"{folder} is being written by process {os.getpid()}" in err and len(err.splitlines()) == 1
        assert sorted(path.name for path in folder.iterdir()) == before
    assert main(argv) == 0 and (run / "cosine.json").is_file()  # released with its holder


def test_a_change_within_the_tolerance_is_on_the_diagonal_not_above():
    from meta_neighborhoods.experiments.analysis import diagonal_shares

    shares = diagonal_shares(np.array([0.5, 0.5, 0.5]), np.array([0.5 + 1e-8, 0.6, 0.4]))  # rounding, up, down
    assert [shares[f"share_{where}_diagonal"] for where in ("above", "on", "below")] == pytest.approx([1 / 3] * 3)


def _fake_run(model, labels, z, split="train"):
    """A LoadedRun's stand-in around ``model`` whose ``split`` images have labels ``labels`` and features ``z``."""
    images = ImageSplit(np.zeros((len(labels), 1, 2, 2), np.uint8), labels)
    return SimpleNamespace(run_dir=Path("r"), checkpoint_sha256="0" * 64, model=model, train=images, device="cpu",
                           dataset=SimpleNamespace(classes=["a", "b", "c", "d"], test=images),
                           config=SimpleNamespace(dataset="digits", backbone="convnet4", method="mn"),
                           cache={(split, np.arange(len(labels)).tobytes()): z})


def _keyed_model(keys, values, similarity="cosine"):
    return SimpleNamespace(dictionary=SimpleNamespace(keys=keys, values=lambda: values),
                           attention=SimpleNamespace(similarity=similarity))


def test_the_feature_space_share_takes_each_key_s_most_similar_training_feature(tmp_path):
    eye = torch.eye(4)
    z = torch.cat([eye, -eye[:2]])  # six training features: +e0..+e3 (classes 0..3), -e0, -e1 (classes 2, 3)
    labels = np.array([0, 1, 2, 3, 2, 3], dtype=np.int64)
    keys = torch.stack([eye[0] + 0.1 * eye[1], eye[1] + 0.1 * eye[2]])  # nearest: +e0 (class 0), +e1 (class 1)
    values = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0]])
    run = _fake_run(_keyed_model(keys, values), labels, z)
    assert analyze_tsne(run, tmp_path, samples=None, seed=0)["key_nearest_same_class_share_feature_space"] == 1.0


def test_a_cosine_model_s_features_and_keys_are_embedded_as_unit_vectors(tmp_path, monkeypatch):
    """Its attention sees only directions: a feature 100 times longer is the same point to it, and to the t-SNE;
    a Euclidean attention's features are embedded as they are."""
    embedded = []

    class Embedding:  # t-SNE's stand-in: keeps what it is given to embed
        def __init__(self, **settings):
            pass

        def fit_transform(self, points):
            embedded.append(points)
            return points[:, :2]

    monkeypatch.setattr("sklearn.manifold.TSNE", Embedding)
    generator = torch.Generator().manual_seed(0)
    z, keys = torch.randn(6, 4, generator=generator), torch.randn(2, 4, generator=generator)
    values = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0]])
    labels = np.array([0, 1, 2, 3, 0, 1], dtype=np.int64)
    for similarity in ("cosine", "euclidean"):
        for scale in (1.0, 100.0):
            scaled = z.clone()
            scaled[0] *= scale
            result = analyze_tsne(_fake_run(_keyed_model(keys, values, similarity), labels, scaled),
                                  tmp_path / similarity, samples=None, seed=0)
            assert result["config"]["normalised"] is (similarity == "cosine")
    cosine, cosine_scaled, euclidean, euclidean_scaled = embedded
    np.testing.assert_allclose(np.linalg.norm(cosine, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cosine_scaled, cosine, rtol=1e-6)
    np.testing.assert_allclose(euclidean, torch.cat([z, keys]).numpy(), rtol=1e-6)
    assert not np.allclose(euclidean_scaled, euclidean)


class _ScaledHead:
    """A head whose logits are tau * z @ weight, as the cosine head's are tau times cosines (tau: ``scale``)."""

    scale = torch.tensor(4.0)

    def __init__(self, weight):
        self.weight = weight

    def __call__(self, z):
        return self.scale * z @ self.weight


def test_accuracy_after_adaptation_is_that_of_the_adapted_logits(tmp_path):
    """The digits run's adaptation changes no prediction, so the accuracy after could be the one before there; here
    the adapted head swaps the two prototypes and so every prediction."""
    z = torch.eye(2).repeat(2, 1)  # features e0, e1, e0, e1
    labels = np.array([0, 1, 1, 1], dtype=np.int64)
    head, swapped = _ScaledHead(torch.eye(2)), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    model = SimpleNamespace(head=head, predict_features=lambda part: head.scale * part @ swapped, eval=lambda: None)
    result = analyze_cosine(_fake_run(model, labels, z, split="test"), tmp_path)
    rows = torch.arange(4)
    assert result["accuracy_before"] == float((z.argmax(1).numpy() == labels).mean()) == 0.75
    assert result["accuracy_after"] == float(((z @ swapped).argmax(1).numpy() == labels).mean()) == 0.25
    assert result["before"] == z[rows, labels].tolist() and result["after"] == (z @ swapped)[rows, labels].tolist()
