"""MNConfig: one home for the method's defaults and their validation, shared by every front end."""

import inspect
import json

import numpy as np
import pytest

from meta_neighborhoods.config import FIELDS, MAX_EPOCHS, ClassificationConfig, MNConfig, SpiralConfig
from meta_neighborhoods.estimators import MetaNeighborhoodsRegressor
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.image_methods import IMAGE_CONFIG, build_model
from meta_neighborhoods.validation import ConfigError


@pytest.mark.parametrize("field, value, message", [
    ("task", "ranking", "unknown task 'ranking'; expected one of 'regression', 'classification'"),
    ("dictionary_size", -1, "dictionary_size must be a non-negative integer, got -1"),
    ("dictionary_size", 2.5, "dictionary_size must be a non-negative integer"),
    ("similarity", "manhattan", "unknown similarity 'manhattan'; expected one of 'cosine', 'euclidean'"),
    ("temperature", 0.0, "temperature must be positive, got 0.0"),
    ("temperature", "hot", "temperature must be positive"),
    ("temperature", float("inf"), "temperature must be positive and finite, got inf"),
    ("temperature", 1e39, r"temperature must be within float32's range \(1.18e-38 to 3.4e\+38\)"),  # trained to NaN
    ("temperature", 1e-39, "temperature must be within float32's range"),
    ("inner_steps", 0, "inner_steps must be a positive integer, got 0"),
    ("inner_steps", 10**9, "inner_steps must be at most 100, got 1000000000"),
    ("inner_steps", True, "inner_steps must be a positive integer"),
    ("step_size", "full", "unknown step size 'full'; expected one of 'scalar', 'layer', 'diagonal'"),
    ("step_size_init", -0.1, "step_size_init must be positive"),
    ("adapt", "first", "unknown adapt 'first'; expected one of 'all', 'last'"),
    ("values", "soft", "unknown values 'soft'"),
    ("keys", "frozen", "unknown keys 'frozen'; expected one of 'learned', 'fixed'"),
    ("key_init", "zeros", "unknown key_init 'zeros'; expected one of 'samples', 'gaussian'"),
    ("key_std", 0, "key_std must be positive"),
    ("key_lr_scale", 0.0, "key_lr_scale must be positive, got 0.0"),
    ("slot_dropout", 1.0, r"slot_dropout must be in \[0, 1\), got 1.0"),
    ("slot_draw", "column", "unknown slot_draw 'column'; expected one of 'row', 'batch'"),
    ("implementation", "cuda", "unknown implementation 'cuda'"),
    ("learn_temperature", "yes", "learn_temperature must be True or False"),
    ("learn_metric", "no", "learn_metric must be True or False"),
    ("first_order", 1, "first_order must be True or False"),
])
def test_every_field_is_checked_and_named(field, value, message):
    with pytest.raises(ConfigError, match=message):
        MNConfig(**{field: value})
    with pytest.raises(ValueError, match=message):  # a ConfigError is a ValueError, as scikit-learn users expect
        MNConfig().replace(**{field: value})


def test_replace_refuses_unknown_fields_and_lists_them():
    with pytest.raises(ConfigError, match="unknown MNConfig field.*dictionary_sise.*fields: adapt, dictionary_size"):
        MNConfig().replace(dictionary_sise=4)


def test_numbers_become_plain_python_values():
    config = MNConfig(dictionary_size=np.int64(8), inner_steps=np.int32(2), temperature=np.float32(0.5),
                      learn_temperature=np.bool_(True), slot_dropout=np.float32(0.25))
    assert [type(getattr(config, name)) for name in ("dictionary_size", "inner_steps", "temperature",
                                                     "learn_temperature", "slot_dropout")] == [int, int, float, bool,
                                                                                               float]
    assert set(config.to_dict()) == FIELDS


def test_a_run_config_records_its_folders_as_text():
    from pathlib import Path

    config = ClassificationConfig("digits", "convnet4", "mn", data_dir=Path("data"))
    assert config.data_dir == "data" and type(config.data_dir) is str  # what run.json and config.json hold


def test_model_keywords_override_the_config():
    model = MetaNeighborhoods(MLPHead(3, (4,), 1), MNConfig(dictionary_size=5), inner_steps=2)
    assert model.config == MNConfig(dictionary_size=5, inner_steps=2)
    assert model.dictionary.size == 5 and model.adaptation.steps == 2
    assert MetaNeighborhoods(MLPHead(3, (), 1), dictionary_size=0).vanilla


def test_defaults_the_estimators_share_with_the_method_are_the_method_defaults():
    defaults = {name: p.default for name, p in inspect.signature(MetaNeighborhoodsRegressor).parameters.items()}
    for name in ("inner_steps", "step_size_init", "adapt"):
        assert defaults[name] == getattr(MNConfig(), name), name
    # like S and top-k, the step size was swept on tables only; the image and spiral presets keep MNConfig's
    assert (defaults["step_size"], MNConfig().step_size) == ("layer", "scalar")


def test_image_methods_use_the_image_config():
    model = build_model("mn", "convnet4", 1, 3, dictionary_size=6)
    assert model.config == IMAGE_CONFIG.replace(dictionary_size=6)
    assert build_model("vanilla", "convnet4", 1, 3, dictionary_size=6).vanilla
    c = IMAGE_CONFIG  # the authors' settings for Table 1 (DESIGN.md), pinned: the line above only says it is used
    assert (c.task, c.similarity, c.temperature, c.adapt, c.key_std, c.slot_dropout) == (
        "classification", "cosine", 0.2, "last", 0.05, 0.5)


def test_ifilm_modulates_every_batch_normalisation_of_the_backbone():
    from torch import nn

    from meta_neighborhoods.film import FiLMBatchNorm2d

    films = sum(isinstance(m, FiLMBatchNorm2d) for m in build_model("mn_ifilm", "resnet29", 3, 10, 4).modules())
    plain = sum(isinstance(m, nn.BatchNorm2d) for m in build_model("mn", "resnet29", 3, 10, 4).modules())
    assert films == plain == 28


@pytest.mark.parametrize("options, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"epochs": MAX_EPOCHS + 1}, f"epochs must be at most {MAX_EPOCHS}, got {MAX_EPOCHS + 1}$"),
    ({"epochs": 10**400}, f"epochs must be at most {MAX_EPOCHS}, got <an integer of about 401 digits>$"),
    ({"batch_size": "32"}, "batch_size must be a positive integer"),
    ({"dictionary_size": 0}, "dictionary size must be a positive integer"),
    ({"key_init": "zeros"}, "unknown key initialisation 'zeros'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"seed": -1}, "seed must be an integer from 0 to 4611686018427387903, got -1"),
    ({"seed": 2**62}, "seed must be an integer from 0 to 4611686018427387903"),
    ({"lr_drop_at": 0}, r"lr_drop_at must be in \(0, 1\], got 0"),
    ({"lr_drop_at": 1.5}, r"lr_drop_at must be in \(0, 1\], got 1.5"),
    ({"image_size": 0}, "image_size must be a positive integer, got 0"),
    ({"image_size": 5000}, "image_size must be at most 4096, got 5000"),
])
def test_a_classify_run_checks_its_arguments(options, message):
    with pytest.raises(ConfigError, match=message):
        ClassificationConfig("digits", "convnet4", "mn", **options)


def test_epochs_past_the_bound_are_a_usage_error_before_any_folder_is_made(tmp_path, capsys, user_folder):
    """10**400 epochs (on the command line, or from a --config file or a run's record) overflowed classify's
    learning rate schedule after its folder was made, and ran spiral for minutes."""
    from meta_neighborhoods.cli import main

    assert SpiralConfig(epochs=MAX_EPOCHS).epochs == ClassificationConfig("digits", "convnet4", "mn",
                                                                          epochs=MAX_EPOCHS).epochs
    with pytest.raises(ConfigError, match=f"epochs must be at most {MAX_EPOCHS}, got {MAX_EPOCHS + 1}"):
        SpiralConfig(epochs=MAX_EPOCHS + 1)
    (tmp_path / "options.json").write_text(json.dumps({"dataset": "digits", "backbone": "convnet4", "method": "mn",
                                                       "epochs": 10**400}))
    (tmp_path / "metrics.json").write_text(json.dumps({"config": {"n_per_class": 800, "epochs": 10**400}}))
    classify = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "mn"]
    for argv in ([*classify, "--epochs", "1" + "0" * 400], ["classify", "--config", str(tmp_path / "options.json")],
                 ["spiral", "--config", str(tmp_path / "metrics.json")]):
        out = user_folder(f"run{len(list(tmp_path.iterdir()))}")
        assert main([*argv, "--out", str(out), "--device", "cpu", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"epochs must be at most {MAX_EPOCHS}, got <an integer of about 401 digits>" in err and len(err.splitlines()) == 1
        assert not any(out.iterdir())


def test_a_learning_rate_drop_at_the_very_end_is_allowed():
    assert ClassificationConfig("digits", "convnet4", "mn", lr_drop_at=1).lr_drop_at == 1  # never drops


def test_the_command_lines_show_the_run_configs_defaults(capsys):
    from meta_neighborhoods.cli import main

    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"training epochs (default {ClassificationConfig.epochs})" in text
    assert f"mini-batch size (default {ClassificationConfig.batch_size})" in text
    with pytest.raises(SystemExit):
        main(["spiral", "--help"])
    assert f"(default {SpiralConfig.epochs})" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        SpiralConfig(epochs=0)
    with pytest.raises(ConfigError, match="seed must be an integer from 0 to"):
        SpiralConfig(seed=-1)


def test_a_run_recorded_with_a_large_seed_is_still_read():
    """Seeds up to 2**62 (torch takes signed 64-bit ones): a classify run of seed 2**32 could not be analysed."""
    assert ClassificationConfig("digits", "convnet4", "mn", seed=2**32).seed == 2**32
    from meta_neighborhoods.experiments.cross_validation import protocol_options
    with pytest.raises(ConfigError, match="seed must be an integer from 0 to 4294967295"):  # scikit-learn's limit
        protocol_options(5, 2**32, 3, None)
    with pytest.raises(ConfigError, match="seeds must be at most 2 from seed 4294967294"):  # seed + repeat, each
        protocol_options(5, 2**32 - 2, 3, None)


def test_the_thread_limit_is_inclusive():
    from meta_neighborhoods.validation import MAX_THREADS, check_threads

    assert check_threads("threads", MAX_THREADS) == MAX_THREADS
    with pytest.raises(ConfigError, match="at most 1024"):
        check_threads("threads", MAX_THREADS + 1)


def test_the_estimators_automatic_similarity_and_temperature():
    """The rules the defaults were chosen with (docs/results/defaults.md): regression goes cosine above 32 key
    features (gom's 116), classification stays Euclidean (digits' 64: cosine lost to vanilla); Euclidean
    temperature the key width (squared distances of standardised rows grow like 2 d), cosine 0.1."""
    from meta_neighborhoods.config import auto_similarity, default_temperature

    assert [auto_similarity("regression", d) for d in (32, 33, 116)] == ["euclidean", "cosine", "cosine"]
    assert [auto_similarity("classification", d) for d in (32, 64, 1000)] == ["euclidean"] * 3
    assert (default_temperature("euclidean", 7), default_temperature("cosine", 116)) == (7.0, 0.1)


def test_the_inner_steps_limit_is_inclusive():
    assert MNConfig(inner_steps=100).inner_steps == 100
    with pytest.raises(ConfigError, match="inner_steps must be at most 100, got 101"):
        MNConfig(inner_steps=101)
