"""Table 1 experiment: the classify command end to end on digits (shipped with scikit-learn, so always here), name
checks, the best-checkpoint logic, and what a run folder records (run.json, metrics.csv, TensorBoard)."""

import csv
import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from meta_neighborhoods import checkpoint
from meta_neighborhoods.callbacks import tensorboard_available
from meta_neighborhoods.cli import main
from meta_neighborhoods.config import ClassificationConfig
from meta_neighborhoods.datasets.batches import ImageBatches, TensorBatches
from meta_neighborhoods.datasets.images import ImageDataset, ImageSplit, load_image_dataset
from meta_neighborhoods.experiments.image_data import batches, evaluate
from meta_neighborhoods.experiments import classification
from meta_neighborhoods.image_methods import (IMAGE_CONFIG, METHODS, BestCheckpoint, build_model,
                                              init_keys_from_features, load_checkpoint)
from meta_neighborhoods.training import fit

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """All five methods, 2 epochs. Batch 32: at 128 the BatchNorm running statistics still lag after 20 steps,
    and evaluation-mode accuracy after 2 epochs is ~0.35 although the batch-statistics accuracy is ~0.95."""
    out = tmp_path_factory.mktemp("classify") / "digits"
    assert main(_digits_argv(out)) == 0
    return out


def _digits_argv(out):
    return ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "all", "--epochs", "2",
            "--batch-size", "32", "--out", str(out), "--device", "cpu", "--quiet"]


def test_classify_all_writes_every_method_and_a_comparison(digits_run, capsys):
    for method in METHODS:
        metrics = json.loads((digits_run / method / "metrics.json").read_text())
        assert {"test_accuracy", "validation_accuracy", "best_epoch", "method", "backbone", "dataset", "epochs",
                "seconds", "config"} <= set(metrics)
        assert (metrics["method"], metrics["backbone"], metrics["dataset"], metrics["epochs"]) == (
            method, "convnet4", "digits", 2)
        assert metrics["best_epoch"] in (1, 2) and len(metrics["history"]) == 2
        assert metrics["test_accuracy"] > 0.8, f"{method} after 2 epochs (chance is 0.1)"
        assert json.loads((digits_run / method / "config.json").read_text()) == metrics["config"]
        expected_size = 100 if METHODS[method].dictionary else 0
        assert metrics["config"]["model"]["dictionary_size"] == expected_size
    table = (digits_run / "comparison.md").read_text()
    assert "| method | test accuracy | validation accuracy | best epoch | seconds |" in table
    comparison = json.loads((digits_run / "comparison.json").read_text())["methods"]
    assert set(comparison) == set(METHODS)
    for method, m in comparison.items():  # each cell under its own header: test, then validation accuracy
        assert (f"| {method} | {m['test_accuracy']:.4f} | {m['validation_accuracy']:.4f} | {m['best_epoch']} | "
                f"{m['seconds']:.1f} |") in table, method


# The authors' image settings, each as DESIGN.md's "Facts from the authors' own code" (and its note on their README's
# CIFAR-100 run) gives it
AUTHORS_IMAGE_SETTINGS = {
    "task": "classification",
    "similarity": "cosine",  # the paper's cosine similarity, as their image code
    "temperature": 0.2,  # "attention temperature T = 0.2 for images"; README: "inverse temperature 5 (T = 0.2)"
    "adapt": "last",  # "Only the output layer is adapted for images"
    "inner_steps": 1, "first_order": False,  # "one inner step; full second-order meta-gradient"
    "step_size": "scalar", "step_size_init": 0.05,  # "Step size |alpha|, learned, init 0.05"; README: "scalar step"
    "key_std": 0.05,  # "Keys ~ N(0, 0.05^2)"
    "keys": "learned", "values": "learned",  # the loss is back-propagated into "the keys, the values"
    "slot_dropout": 0.5, "slot_draw": "row",  # "each example sees a random half of the dictionary slots"
}


def test_the_image_methods_keep_the_authors_settings_and_every_run_records_them(digits_run):
    """Table 1 compares with the authors' numbers only under their settings: each is pinned to its source, and
    config.json, the record of what each run trained, carries them where the method has neighbours (and only
    there)."""
    assert {name: getattr(IMAGE_CONFIG, name) for name in AUTHORS_IMAGE_SETTINGS} == AUTHORS_IMAGE_SETTINGS
    for folder in (digits_run, *(digits_run / method for method in METHODS)):
        config = json.loads((folder / "config.json").read_text())
        if folder.name in METHODS and not METHODS[folder.name].dictionary:
            assert "meta_neighborhoods" not in config, folder
            continue
        recorded = config["meta_neighborhoods"]
        assert {name: recorded[name] for name in AUTHORS_IMAGE_SETTINGS} == AUTHORS_IMAGE_SETTINGS, folder


@pytest.mark.parametrize("method", list(METHODS))
def test_best_checkpoint_reloads_into_a_fresh_model_and_reproduces_the_test_accuracy(digits_run, method):
    metrics = json.loads((digits_run / method / "metrics.json").read_text())
    tensors, info = checkpoint.load(digits_run / method / "best")
    assert info["epoch"] == metrics["best_epoch"]
    assert info["model_args"] == metrics["config"]["model"]
    model = build_model(**metrics["config"]["model"])
    model.load_state_dict(checkpoint.network_of(tensors))  # strict: same architecture, nothing missing
    dataset = load_image_dataset("digits")
    test = ImageBatches(dataset.test, dataset.mean, dataset.std, batch_size=metrics["config"]["batch_size"])
    assert evaluate(model, test, CPU)[0] == metrics["test_accuracy"]


def test_every_run_folder_records_provenance_seeds_and_inputs(digits_run):
    """run.json beside config.json, in each method's folder and in the parent of --method all."""
    for folder in (digits_run, *(digits_run / method for method in METHODS)):
        record = json.loads((folder / "run.json").read_text())
        provenance = record["provenance"]
        assert provenance["torch"] == torch.__version__ and provenance["python"] == sys.version.split()[0]
        # cli.main called in-process: its arguments as the package's command line, not pytest's (sys.argv)
        assert provenance["command"] == [sys.executable, "-m", "meta_neighborhoods", *_digits_argv(digits_run)]
        assert "git_commit" in provenance and record["resumed"] == []
        assert set(record["seeds"].values()) == {0}  # --seed's default, from which every seed is drawn
        assert record["classes"] == [str(i) for i in range(10)] and record["dataset"] == "digits"
        inputs = record["input"]
        assert (inputs["layout"], inputs["channels"], inputs["height"], inputs["width"]) == ("NCHW", 1, 8, 8)
        # the recipe holds on scikit-learn's own digits only once their counts are scaled as the loader does
        assert inputs["pixels"] == "scikit-learn's load_digits counts 0..16, times 255 / 16, rounded half to even"
    split = json.loads((digits_run / "mn" / "split.json").read_text())
    assert (inputs["mean"], inputs["std"]) == (split["mean"], split["std"])


def test_metrics_csv_has_a_row_per_epoch_as_metrics_json_tells(digits_run):
    for method in METHODS:
        metrics = json.loads((digits_run / method / "metrics.json").read_text())
        with open(digits_run / method / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [int(row["epoch"]) for row in rows] == [1, 2]
        for row, epoch in zip(rows, metrics["history"]):
            assert float(row["train_loss"]) == pytest.approx(epoch["loss"])
            assert float(row["validation_accuracy"]) == pytest.approx(epoch["validation_accuracy"])
            assert float(row["validation_loss"]) == pytest.approx(epoch["validation_loss"])
            assert float(row["seconds"]) > 0
        assert [float(row["learning_rate"]) for row in rows] == pytest.approx([1e-3, 1e-4])  # x0.1 after 2/3
        assert (digits_run / method / "tensorboard").is_dir() == tensorboard_available()


def test_a_bad_train_subset_fails_before_any_file_is_written(tmp_path, capsys, user_folder):
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "all", "--train-subset", "0",
            "--out", str(user_folder("run")), "--quiet"]
    assert main(argv) == 2
    assert "train_subset must be in 1.." in capsys.readouterr().err
    assert not any((tmp_path / "run").iterdir())  # not even the lock of a claimed folder
    (tmp_path / "run.toml").write_text("train-subset = 0\nbatch-size = 64\n")
    assert main([*argv[:-5], "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "run2"), "--quiet"]) == 2
    assert f"{tmp_path / 'run.toml'}: train_subset must be in 1.." in capsys.readouterr().err  # names the file


def test_a_missing_data_set_leaves_no_output_folder(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()  # a data folder without the data set
    argv = ["classify", "--dataset", "mnist", "--backbone", "convnet4", "--method", "mn", "--data-dir",
            str(tmp_path / "nothing"), "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 1
    assert "mnist: missing" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, name, message", [
    ("--method", "knn", "unknown method 'knn'; choose one of vanilla, maxl, vanilla_ifilm, mn, mn_ifilm, all"),
    ("--backbone", "vgg", "unknown backbone 'vgg'"),
    ("--dataset", "nope", "unknown image data set 'nope'"),
])
def test_unknown_names_fail_with_one_clear_line(tmp_path, capsys, flag, name, message):
    args = {"--dataset": "digits", "--backbone": "convnet4", "--method": "vanilla", flag: name}
    argv = ["classify", *[item for pair in args.items() for item in pair], "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("meta-neighborhoods classify: error: ") and message in error
    assert error.count("\n") == 1


def test_classify_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--dataset", "--backbone", "--method", "--epochs", "--batch-size", "--train-subset",
                   "--dictionary-size", "--data-dir", "--cache-dir", "--device", "--seed", "--quiet"):
        assert option in text


def _predict(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_reloaded_checkpoint_predicts_like_the_best_model_in_memory(tmp_path):
    """The best epoch's weights (BatchNorm statistics, dictionary, iFiLM, tau, alpha) survive the round trip,
    and a later, worse epoch does not overwrite them."""
    torch.manual_seed(0)
    args = {"method": "mn_ifilm", "backbone": "convnet4", "in_channels": 1, "num_classes": 3, "dictionary_size": 8}
    model = build_model(**args)
    x, y = torch.randn(24, 1, 8, 8), torch.randint(0, 3, (24,))
    best = BestCheckpoint(tmp_path / "best", args)
    train = TensorBatches(x, y, batch_size=8)

    fit(model, train, epochs=1)
    assert best.update(model, 0.5, loss=0.8, epoch=1)
    expected = _predict(model, x)
    fit(model, train, epochs=1)
    assert not best.update(model, 0.4, loss=0.1, epoch=2)  # accuracy first
    assert not best.update(model, 0.5, loss=0.8, epoch=3)  # a whole tie keeps the earlier epoch
    assert not torch.allclose(_predict(model, x), expected)

    fresh = build_model(**args)
    _, info = load_checkpoint(tmp_path / "best", fresh)
    assert (info["epoch"], info["validation_accuracy"], info["validation_loss"], info["model_args"]) == (
        1, 0.5, 0.8, args)
    torch.testing.assert_close(_predict(fresh, x), expected, rtol=0, atol=0)
    assert [p.suffix for p in tmp_path.iterdir()].count(".safetensors") == 1  # the stale weights are gone
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_an_accuracy_tie_goes_to_the_lower_validation_loss(tmp_path):
    """A saturated validation split (every image right) still tells the epochs apart by their loss."""
    args = {"method": "vanilla", "backbone": "convnet4", "in_channels": 1, "num_classes": 3, "dictionary_size": 0}
    best = BestCheckpoint(tmp_path / "best", args)
    model = build_model(**args)
    assert best.update(model, 1.0, loss=0.30, epoch=4)
    assert best.update(model, 1.0, loss=0.05, epoch=6)
    assert not best.update(model, 1.0, loss=0.07, epoch=7)
    assert (best.accuracy, best.loss, best.epoch) == (1.0, 0.05, 6)
    assert load_checkpoint(tmp_path / "best")[1]["epoch"] == 6


def test_evaluate_returns_accuracy_and_mean_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.5, 0.2, 0.1], [0.0, 4.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 1])
    batches = [(logits[:3], labels[:3]), (logits[3:], labels[3:])]  # two batches: the means weigh every example
    accuracy, loss = evaluate(nn.Identity(), batches, CPU)
    assert accuracy == 0.75
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item())


@pytest.mark.parametrize("rows", [None, np.arange(100, 140)], ids=["every image", "the rows a run trains on"])
def test_keys_can_start_at_training_features(rows):
    """--key-init samples: keys are features of training images (among ``rows``), values peak at their labels."""
    dataset = load_image_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mn", "convnet4", 1, 10, dictionary_size=20)
    init_keys_from_features(model, dataset.train, dataset.mean, dataset.std, seed=0, device=torch.device("cpu"),
                            rows=rows)
    torch.manual_seed(0)  # the same network, to compute the features of the images the keys should be
    reference = build_model("mn", "convnet4", 1, 10, dictionary_size=20).train()
    among = np.arange(len(dataset.train)) if rows is None else rows
    pick = among[np.random.default_rng(0).choice(len(among), 20, replace=False)]
    x, y = next(iter(ImageBatches(ImageSplit(dataset.train.images[pick], dataset.train.labels[pick]),
                                  dataset.mean, dataset.std, batch_size=20)))
    with torch.no_grad():
        distance, row = torch.cdist(model.dictionary.keys, reference.features(x)).min(dim=1)
    assert distance.max() < 1e-4 and sorted(row.tolist()) == list(range(20))  # each key is one image's feature
    values = model.dictionary.values()
    assert torch.equal(values.argmax(1), y[row]) and values.max(dim=1).values.min() > 0.99  # its label, one-hot


def test_the_test_accuracy_is_the_best_epoch_s_when_a_later_epoch_is_worse(tmp_path, monkeypatch):
    from meta_neighborhoods import image_methods
    from meta_neighborhoods.experiments.classification import run_classification

    # only the first epoch counts as an improvement: the best checkpoint is epoch 1 of 3, not the last
    monkeypatch.setattr(image_methods, "higher_accuracy_then_lower_loss", lambda new, best: best["accuracy"] < 0)
    metrics = run_classification("digits", "convnet4", "vanilla", tmp_path / "run", progress=False, epochs=3,
                                 batch_size=32, device="cpu")
    model, _ = load_checkpoint(tmp_path / "run" / "best")
    data = load_image_dataset("digits")
    test = ImageBatches(data.test, data.mean, data.std, batch_size=32)
    assert metrics["best_epoch"] == 1 and metrics["test_accuracy"] == evaluate(model, test, torch.device("cpu"))[0]


def test_the_validation_images_never_train():
    from meta_neighborhoods.experiments.image_data import split_validation

    data = load_image_dataset("digits")
    splits = split_validation(data, 0)
    train, valid = set(splits.train_index.tolist()), set(splits.validation_index.tolist())
    assert valid and not train & valid and len(train) + len(valid) == len(data.train)


def test_training_batches_are_reshuffled_every_epoch_and_evaluation_batches_keep_the_split_s_order():
    """SGD on batches in the split's order (sorted indices, so often by class) trains worse and differently;
    validation and test need no shuffle. Each image's label is its index, so the labels show the order."""
    n = 40
    split = ImageSplit(np.zeros((n, 1, 4, 4), dtype=np.uint8), np.arange(n))
    dataset = ImageDataset("fake", split, split, [str(i) for i in range(n)], (0.5,), (0.25,), "none")
    config = ClassificationConfig("fake", "convnet4", "vanilla", batch_size=8)

    def epoch_labels(batches):
        return torch.cat([y for _, y in batches]).tolist()

    training = batches(split, dataset, config, training=True)
    first, second = epoch_labels(training), epoch_labels(training)
    assert sorted(first) == sorted(second) == list(range(n))  # every image once an epoch
    assert first != list(range(n)) and second != first
    evaluation = batches(split, dataset, config)
    assert epoch_labels(evaluation) == epoch_labels(evaluation) == list(range(n))


def test_evaluation_runs_in_evaluation_mode_and_leaves_the_batch_statistics():
    torch.manual_seed(0)
    model = build_model("vanilla", "convnet4", 1, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    split = ImageSplit(np.random.default_rng(0).integers(0, 256, (8, 1, 8, 8), dtype=np.uint8), np.arange(8) % 3)
    evaluate(model, ImageBatches(split, (0.5,), (0.25,), batch_size=4), torch.device("cpu"))
    assert not model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_keys_from_samples_start_at_the_images_the_run_trains_on_and_no_image_twice(tmp_path, capsys, monkeypatch):
    """With --train-subset the run trains on some of the training split: its keys start there, not on images it
    never sees; fewer images than keys is refused before any folder."""
    seen = []
    monkeypatch.setattr(classification, "init_keys_from_features",
                        lambda model, split, *rest: seen.append(split.images[rest[-1]]))
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn", "--epochs", "1",
            "--batch-size", "8", "--key-init", "samples", "--device", "cpu", "--quiet"]
    assert main([*argv, "--train-subset", "12", "--out", str(tmp_path / "few")]) == 2
    assert "--key-init samples starts each of the 100 keys at a training image, and the run trains on 12: give " \
        "--dictionary-size 12 or fewer, or --key-init gaussian" in capsys.readouterr().err
    assert not (tmp_path / "few").exists() and not seen
    assert main([*argv, "--train-subset", "16", "--dictionary-size", "16", "--out", str(tmp_path / "run")]) == 0
    trained = json.loads((tmp_path / "run" / "split.json").read_text())["train"]
    images = load_image_dataset("digits").train.images
    [drawn_from] = seen
    np.testing.assert_array_equal(drawn_from, images[trained])


def test_a_resume_of_method_all_refuses_a_method_folder_of_another_run(tmp_path, capsys):
    """A method's folder replaced by a run of other settings (another seed) would mix its accuracy into the
    comparison of the run it sits in: refused, naming the setting, before anything is trained or written."""
    common = ["--dataset", "digits", "--backbone", "convnet4", "--epochs", "1", "--batch-size", "32",
              "--train-subset", "64", "--device", "cpu", "--quiet"]
    out = tmp_path / "all"
    assert main(["classify", *common, "--method", "all", "--out", str(out)]) == 0
    assert main(["classify", *common, "--method", "mn", "--seed", "7", "--out", str(out / "mn"), "--overwrite"]) == 0
    written = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    capsys.readouterr()  # the runs' own lines (a short run is warned of)
    assert main(["classify", "--resume", str(out), "--device", "cpu", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'mn' / 'config.json'} records seed 7, where the --method all run in {out} gives mn 0: it holds " \
        "another run; move it out of the run's folder" in err and len(err.splitlines()) == 1
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == written


def test_a_resume_of_method_all_takes_a_member_s_unused_settings_as_older_runs_recorded_them(tmp_path, monkeypatch):
    """Runs of earlier versions recorded a vanilla member's dictionary size and key start as the run's, though it
    reads neither: not another run's settings. A resume sets no keys, so --key-init samples is not checked again."""
    out = tmp_path / "all"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--epochs", "1", "--batch-size", "32",
                 "--train-subset", "64", "--device", "cpu", "--quiet", "--method", "all", "--key-init", "samples",
                 "--dictionary-size", "20", "--out", str(out)]) == 0
    for name in ("config.json", "last.json"):
        saved = json.loads((out / "vanilla" / name).read_text())
        (saved.get("config") or saved).update(dictionary_size=20, key_init="samples")
        (out / "vanilla" / name).write_text(json.dumps(saved))
    monkeypatch.setattr(classification, "check_key_images", lambda *args: pytest.fail("checked on a resume"))
    assert main(["classify", "--resume", str(out), "--device", "cpu", "--quiet"]) == 0


def test_a_resume_without_the_split_of_its_checkpoint_is_refused(tmp_path, capsys):
    """split.json is how a resume checks the images against the run's: a folder with checkpoint last but without
    it is refused, not continued on whatever images the data folder holds."""
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    (out / "split.json").unlink()
    record, metrics = (out / "run.json").read_bytes(), (out / "metrics.json").read_bytes()
    capsys.readouterr()  # the run's own lines (a short run is warned of)
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'split.json'} is missing beside {out / 'last'}.json" in err and len(err.splitlines()) == 1
    assert (out / "run.json").read_bytes() == record and (out / "metrics.json").read_bytes() == metrics


@pytest.mark.parametrize("field, value, message", [
    ("accuracy", 7.5, "the best epoch should be a count of epochs and its accuracy, loss numbers"),
    ("accuracy", 10**400, "the best epoch should be a count of epochs and its accuracy, loss numbers"),
    ("epoch", 2, "the state of 'best' names epoch 2, outside the 1 epochs the checkpoint has trained")],
    ids=["accuracy 7.5", "accuracy 10**400", "epoch past the checkpoint"])
def test_a_resume_refuses_a_best_epoch_no_epoch_could_have_measured(tmp_path, capsys, field, value, message):
    """An accuracy of 7.5, or a best epoch still to come, would keep the checkpointed network over every epoch the
    resumed run trains; one of 10**400 (no float holds it) failed after a whole epoch. One line, before training."""
    out = tmp_path / "run"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    for name, key in (("last.json", field), ("best.json", {"accuracy": "validation_accuracy"}.get(field, field))):
        meta = json.loads((out / name).read_text())  # both: best must agree with what last records of it
        (meta["stateful"]["best"] if name == "last.json" else meta)[key] = value
        (out / name).write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1


def test_a_resume_refuses_a_tensorboard_link_in_its_folder(tmp_path, capsys, monkeypatch):
    """TensorBoard's writer opened out/tensorboard with no check: a link there took the events out of the folder.
    (A stand-in writer: the refusal comes before TensorBoard is imported, installed or not.)"""
    import types

    from meta_neighborhoods.experiments import classification

    opened = []

    class Writer:
        def __init__(self, log_dir, purge_step):
            opened.append(log_dir)

        add_scalar = flush = close = lambda self, *args: None

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    monkeypatch.setattr(classification, "tensorboard_available", lambda: True)
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert main(["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
                 "--batch-size", "64", "--train-subset", "200", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert opened == [str(out / "tensorboard")]
    elsewhere.mkdir()  # the stand-in wrote no folder
    (out / "tensorboard").symlink_to(elsewhere)
    capsys.readouterr()
    assert main(["classify", "--resume", str(out), "--quiet", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'tensorboard'} is a link: the folders a run writes must lie inside {out}" in err
    assert len(err.splitlines()) == 1 and opened == [str(out / "tensorboard")]


def test_classify_off_a_terminal_says_how_far_it_is_each_epoch(tmp_path, capsys):
    """classify redirected to a log said nothing between its start and its end: each epoch is a line on stderr,
    in the form of the command's messages."""
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "2",
            "--batch-size", "64", "--train-subset", "128", "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if ": epoch " in line]
    assert [line.split(", ")[0] for line in lines] == ["meta-neighborhoods classify: vanilla: epoch 1/2",
                                                       "meta-neighborhoods classify: vanilla: epoch 2/2"]
    assert all("loss " in line for line in lines)
    assert main([*argv[:-4], "--out", str(tmp_path / "quiet"), "--device", "cpu", "--quiet"]) == 0
    assert ": epoch " not in capsys.readouterr().err


def test_a_run_of_few_steps_is_warned_that_its_accuracy_may_read_low(tmp_path, capsys, monkeypatch):
    """A trial bounded the cost of classify runs with --epochs and --train-subset: 16 steps scored 0.12 in evaluation
    mode (BatchNorm's running statistics), 0.87 with batch statistics, with nothing said."""
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--epochs", "1",
            "--batch-size", "64", "--train-subset", "200", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "short")]) == 0
    assert "the run takes 4 optimiser steps (1 epoch(s) of 4 batches): over fewer than 100, BatchNorm's running " \
        "statistics lag the weights" in capsys.readouterr().err
    monkeypatch.setattr(classification, "SETTLED_STEPS", 4)
    assert main([*argv, "--out", str(tmp_path / "enough")]) == 0
    assert "BatchNorm" not in capsys.readouterr().err
