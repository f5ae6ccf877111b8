"""``--preset paper``: the authors' values, turned into a classify run's settings."""

import pytest

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
    ("fast", "cifar10", "unknown --preset 'fast'; known: paper"),
    ("paper", "digits", "--preset paper has no settings for 'digits'"),
])
def test_bad_presets_are_refused_naming_the_option(name, dataset, message):
    with pytest.raises(ConfigError, match=message):
        check_preset(name, dataset)


def test_no_preset_is_allowed_for_every_data_set():
    check_preset(None, "digits")
    assert set(PAPER_BUDGETS) == {"cifar10", "cifar100", "mnist", "svhn"}
