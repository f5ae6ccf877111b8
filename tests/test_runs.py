"""Run folders (runs.py): what a classify run records about its data, and how analyze reads it back."""

import json

import numpy as np
import pytest

from meta_neighborhoods import runs
from meta_neighborhoods.datasets.files import shared_data_dir
from meta_neighborhoods.datasets.images import load_image_dataset
from meta_neighborhoods.experiments.analysis import load_run
from meta_neighborhoods.experiments.classification import run_classification

SHARED = shared_data_dir()
needs_digits = pytest.mark.skipif(
    SHARED is None or not (SHARED / "sklearn_digits").is_dir(),
    reason="digits needs ../shared/data/sklearn_digits (or $META_NEIGHBORHOODS_DATA), absent in this checkout",
)


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


def test_a_run_without_a_split_record_is_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="split.json is missing: the run was written by an older version"):
        runs.read_split(tmp_path, n_images=5)


@needs_digits
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
