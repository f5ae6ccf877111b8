"""``--preset paper``: the authors' values, turned into a classify run's settings."""

import json

import numpy as np
import pytest
import torch

from meta_neighborhoods.presets import PAPER_BUDGETS, check_preset, paper_settings
from meta_neighborhoods.validation import ConfigError


def test_cifar100_gets_the_authors_budget_dictionary_and_decay_in_torch_units():
    settings = paper_settings("cifar100", n_classes=100, n_train=45_000)
    assert settings["dictionary_size"] == 10_000  # their README's --dict_size
    assert settings["batch_size"] == 128
    assert settings["epochs"] == 456  # 160,000 steps of 128 images over 45,000 images, rounded up
    assert settings["lr_drop_at"] == pytest.approx(0.75)  # the drop at step 120,000
    # TF's decoupled decay 7.5e-5 per step equals torch's lr * weight_decay at lr 1e-3
    assert 1e-3 * settings["weight_decay"] == pytest.approx(7.5e-5)
    assert settings["augment"] == "paper"


def test_the_budget_in_steps_is_kept_whatever_the_training_split():
    for n_train in (1_000, 54_000, 68_257):
        epochs = paper_settings("mnist", 10, n_train)["epochs"]
        assert (epochs - 1) * n_train < 60_000 * 128 <= epochs * n_train


@pytest.mark.parametrize("name, dataset, message", [
    ("fast", "cifar10", "unknown --preset 'fast'; expected one of 'paper'"),
    ("paper", "digits", "--preset paper has no settings for 'digits'"),
])
def test_bad_presets_are_refused_naming_the_option(name, dataset, message):
    with pytest.raises(ConfigError, match=message):
        check_preset(name, dataset)


def test_no_preset_is_allowed_for_every_data_set():
    check_preset(None, "digits")
    assert set(PAPER_BUDGETS) == {"cifar10", "cifar100", "mnist", "svhn"}
    # the authors' schedules (iterations, drop): CIFAR's [120000, 160000], mnist+svhn's [40000, 60000] for each
    assert [tuple(PAPER_BUDGETS[name]) for name in ("cifar10", "cifar100", "mnist", "svhn")] == [
        (160_000, 120_000), (160_000, 120_000), (60_000, 40_000), (60_000, 40_000)]


def fake_cifar10(n_train=120, n_test=30, classes=3):
    """A random stand-in for CIFAR-10 (uint8 32 x 32 colour images), so that a preset run needs no files."""
    from meta_neighborhoods.datasets.images import ImageDataset, ImageSplit

    rng = np.random.default_rng(0)
    split = lambda n: ImageSplit(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                                 rng.integers(0, classes, n).astype(np.int64))
    return ImageDataset("cifar10", split(n_train), split(n_test), [f"c{i}" for i in range(classes)],
                        (0.5,) * 3, (0.25,) * 3, "crop_flip")


def test_a_paper_run_records_the_authors_values_and_options_given_win(tmp_path, monkeypatch):
    from meta_neighborhoods.experiments import classification

    monkeypatch.setattr(classification, "load_image_dataset", lambda *args, **kwargs: fake_cifar10())
    metrics = classification.run_classification("cifar10", "convnet4", "mn", tmp_path / "run", progress=False,
                                                preset="paper", epochs=2, batch_size=16, device="cpu")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["preset"] == "paper" and config["augment"] == "paper"
    assert config["epochs"] == 2 and config["batch_size"] == 16  # given: they win
    assert config["weight_decay"] == pytest.approx(0.075) and config["lr_drop_at"] == pytest.approx(0.75)
    assert config["dictionary_size"] == 300 and config["model"]["dictionary_size"] == 300  # 100 per class
    assert config["milestones"] == [2]  # round(0.75 * 2)
    assert len(metrics["history"]) == 2


def test_paper_epochs_count_the_training_images_left_after_the_validation_hold_out(tmp_path, monkeypatch):
    """The budget is in steps over the images that train: 120 fake images less the 12 held out for validation
    train, so 160,000 steps of 128 images are ceil(160,000 * 128 / 108) epochs, not ceil(... / 120) = 170,667."""
    from meta_neighborhoods.experiments import classification, image_data

    runs = []
    monkeypatch.setattr(classification, "load_image_dataset", lambda *args, **kwargs: fake_cifar10())
    monkeypatch.setattr(classification, "_execute", lambda config, *args, **kwargs: runs.append(config) or {})
    classification.run_classification("cifar10", "convnet4", "mn", tmp_path / "run", progress=False, preset="paper",
                                      device="cpu")
    assert len(image_data.split_validation(fake_cifar10(), 0).train) == 108
    assert [config.epochs for config in runs] == [189_630]


def test_paper_augmentation_reaches_the_training_batches():
    from meta_neighborhoods.datasets.batches import ImageBatches

    data = fake_cifar10()
    batch = lambda augment: next(iter(ImageBatches(data.train, data.mean, data.std, batch_size=64, seed=1,
                                                   augment=augment)))[0]
    plain, crop_flip, paper = batch("none"), batch("crop_flip"), batch("paper")
    assert plain.shape == crop_flip.shape == paper.shape
    assert not torch.equal(crop_flip, paper)  # same crops and flips (same generator), then AutoAugment and Cutout
    assert torch.equal(batch("paper"), paper)  # and reproducible from the seed


def test_the_command_line_refuses_a_preset_for_a_data_set_without_one_before_any_work(capsys, user_folder):
    from meta_neighborhoods.cli import main

    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--preset", "paper",
            "--out", str(out := user_folder("run")), "--quiet"]
    assert main(argv) == 2
    assert "--preset paper has no settings for 'digits'" in capsys.readouterr().err
    assert not any(out.iterdir())


def test_paper_augmentation_is_refused_on_images_its_cutout_would_hide(capsys, user_folder):
    """Cutout's 16 x 16 square, made for 32 x 32 images, covers every 8 x 8 digit whole: training on blank images."""
    from meta_neighborhoods.cli import main

    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "vanilla", "--augment", "paper",
            "--epochs", "1", "--out", str(out := user_folder("run")), "--quiet"]
    assert main(argv) == 2
    assert "--augment paper cuts a 16 x 16 square out of each image, which hides most or all of images of 8x8 " \
           "pixels" in capsys.readouterr().err
    assert not any(out.iterdir())
