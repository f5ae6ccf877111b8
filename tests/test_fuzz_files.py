"""Fuzzing what is read from disk: checkpoint manifests, run-folder configs and run records, mutated at random (types, missing
and extra keys, huge numbers, nesting, paths). Loading either succeeds or raises the one documented error type
(``CheckpointError``, ``RunFolderError``), never another exception, and touches no file outside its folder."""

import dataclasses
import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_neighborhoods import image_methods, runs
from meta_neighborhoods.checkpoint import CheckpointError
from meta_neighborhoods.config import ClassificationConfig
from meta_neighborhoods.datasets.batches import TensorBatches
from meta_neighborhoods.estimators import MetaNeighborhoodsRegressor
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.run_record import image_inputs, read_inputs, write_run_record
from meta_neighborhoods.training import fit

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, width=64),
                    st.sampled_from(["", "../../etc/passwd", "/tmp/x", "best.0123abcd.safetensors", "a" * 1000]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=4), max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@st.composite
def mutations(draw, document):
    """A copy of ``document`` with one place replaced, removed, or given an extra key."""
    document = json.loads(json.dumps(document))
    path = draw(st.sampled_from(list(_paths(document))[1:]))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "remove", "extra"]))
    if action == "replace":
        parent[path[-1]] = draw(VALUES)
    elif action == "remove" and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    return document


def _everything_outside(root):
    return sorted(str(p) for p in root.iterdir())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An estimator file, a best checkpoint and a last checkpoint, each in a folder of its own."""
    root = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    X, y = torch.randn(40, 3).double().numpy(), torch.randn(40).double().numpy()
    (root / "estimator").mkdir()
    MetaNeighborhoodsRegressor(hidden_layer_sizes=(8,), dictionary_size=6, max_epochs=2, random_state=0).fit(
        X, y).save(root / "estimator" / "model")
    args = {"method": "mn", "backbone": "convnet4", "in_channels": 1, "num_classes": 3, "dictionary_size": 4}
    (root / "best").mkdir()
    image_methods.save_checkpoint(root / "best" / "best", image_methods.build_model(**args), model_args=args, epoch=1,
                                  validation_accuracy=0.5, validation_loss=1.0)
    (root / "last").mkdir()
    fit(_model(), _batches(), epochs=1, last=root / "last" / "last", config={"epochs": 2})
    (root / "run").mkdir()
    (root / "run" / "config.json").write_text(json.dumps(
        {**dataclasses.asdict(ClassificationConfig("digits", "convnet4", "mn")), "version": "0.1"}))  # as written
    (root / "record").mkdir()
    write_run_record(root / "record", {"seeds": {"seed": 0}, "classes": ["0", "1", "2"],
                                       "input": image_inputs((5, 3, 8, 8), [0.5, 0.4, 0.3], [0.2, 0.2, 0.3])})
    return root


def _model():
    torch.manual_seed(0)
    return MetaNeighborhoods(MLPHead(3, (4,), 1), dictionary_size=4)


def _batches():
    generator = torch.Generator().manual_seed(0)
    return TensorBatches(torch.randn(16, 3, generator=generator), torch.randn(16, 1, generator=generator),
                         batch_size=8)


LOADERS = {
    "estimator": ("model.json", lambda folder: MetaNeighborhoodsRegressor.load(folder / "model"), CheckpointError),
    "best": ("best.json", lambda folder: image_methods.load_checkpoint(folder / "best"), CheckpointError),
    "last": ("last.json", lambda folder: fit(_model(), _batches(), epochs=2, last=folder / "last",
                                             resume=True, config={"epochs": 2}), CheckpointError),
    "run": ("config.json", lambda folder: runs.read_config(folder), runs.RunFolderError),
    "record": ("run.json", lambda folder: read_inputs(folder), runs.RunFolderError),
}


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_mutated_file_loads_or_raises_the_documented_error(saved, tmp_path_factory, snapshot, kind):
    name, load, error = LOADERS[kind]
    original = json.loads((saved / kind / name).read_text())
    originals, outcomes = snapshot(saved), []

    @FUZZ
    @given(document=mutations(original))
    def check(document):
        folder = tmp_path_factory.mktemp(kind)
        shutil.rmtree(folder)
        shutil.copytree(saved / kind, folder)
        (folder / name).write_text(json.dumps(document))
        outside = _everything_outside(folder.parent)
        try:
            load(folder)
            outcomes.append("loaded")
        except error:
            outcomes.append("refused")
        assert _everything_outside(folder.parent) == outside

    check()
    assert snapshot(saved) == originals  # no loader reached back into the saved originals
    assert {"loaded", "refused"} <= set(outcomes), outcomes  # the loader reads the file, and refuses what is bad


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_file_that_names_a_key_twice_is_refused_as_a_config_file_is(saved, tmp_path, kind):
    """Python's JSON keeps the last of two same keys without a word: a record read two ways (a reviewer, a loader)
    would say two things. Every kind of file is refused by the error its loader documents."""
    name, load, error = LOADERS[kind]
    folder = tmp_path / kind
    shutil.copytree(saved / kind, folder)
    text = (folder / name).read_text()
    (folder / name).write_text(text.replace("{", '{"twice": 1, "twice": 2, ', 1))
    with pytest.raises(error, match="key 'twice' is given twice"):
        load(folder)

@pytest.mark.parametrize("field, value", [("mean", [0.5, 0.5]), ("std", [0.2, 0.2, 0.2, 0.2])],
                         ids=["mean of 2 for 3 channels", "std of 4 for 3 channels"])
def test_a_run_record_without_one_number_per_channel_is_refused(tmp_path, field, value):
    """export copies mean and std into the ONNX graph for deployment to normalise with: one number per channel (a
    deployment would normalise with too few numbers, or with numbers of another run)."""
    import json

    write_run_record(tmp_path, {"input": image_inputs((0, 3, 8, 8), [0.5] * 3, [0.2] * 3), "classes": ["a", "b"]})
    record = json.loads((tmp_path / "run.json").read_text())
    record["input"][field] = value
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(runs.RunFolderError, match="a finite mean and a positive std per channel"):
        read_inputs(tmp_path)


@pytest.mark.parametrize("classes", [[], ["a\nb"] * 2, ["a", ""]])  # the last two were exported as class names
def test_a_run_record_without_classes_each_named_once_is_refused(tmp_path, classes):
    write_run_record(tmp_path, {"input": image_inputs((0, 3, 8, 8), [0.5] * 3, [0.2] * 3), "classes": classes})
    with pytest.raises(runs.RunFolderError, match="classes should be a non-empty list of names, each once"):
        read_inputs(tmp_path)
