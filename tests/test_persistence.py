"""Fitted estimators survive pickle, joblib and save/load with identical predictions; bad files are named."""

import hashlib
import json
import os
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
import safetensors.torch
import torch
from sklearn.exceptions import NotFittedError

from meta_neighborhoods import checkpoint
from meta_neighborhoods.checkpoint import CheckpointError
from meta_neighborhoods.estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor
from meta_neighborhoods.image_methods import build_model, save_checkpoint
from helpers import noisy_line

FAST = dict(hidden_layer_sizes=(16,), dictionary_size=8, max_epochs=5, learning_rate=1e-2, random_state=0)


def _table(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * 3 + 10
    return X, np.sin(X[:, 0]) + 0.2 * X[:, 1]



@pytest.fixture(scope="module")
def fitted():
    """A regressor, and classifiers with string, integer and boolean labels (two inner steps)."""
    X, y = _table()
    return {
        "regressor": MetaNeighborhoodsRegressor(**FAST, vanilla_fallback=False).fit(X, y),
        "multioutput": MetaNeighborhoodsRegressor(**FAST).fit(X, np.c_[y, -2 * y]),
        "vanilla fallback": MetaNeighborhoodsRegressor(  # a setting where the fallback keeps the vanilla network
            hidden_layer_sizes=(16,), dictionary_size=64, max_epochs=60, learning_rate=1e-2, n_iter_no_change=5,
            batch_size=32, random_state=2).fit(*noisy_line(d=4)),
        "strings": MetaNeighborhoodsClassifier(**FAST, inner_steps=2).fit(X, np.array(["a", "bb", "c"])[
            (X[:, 0] > 10).astype(int) + (X[:, 1] > 12)]),
        "integers": MetaNeighborhoodsClassifier(**FAST, similarity="cosine", learn_metric=True).fit(
            X, (X[:, 2] > 10).astype(int) * 7),
        "booleans": MetaNeighborhoodsClassifier(**{**FAST, "dictionary_size": 0}).fit(X, X[:, 3] > 10),
        "fixed dictionary": MetaNeighborhoodsClassifier(**FAST, learn_dictionary=False).fit(X, X[:, 3] > 10),
    }


def _pickle(model, tmp_path):
    return pickle.loads(pickle.dumps(model))


def _joblib(model, tmp_path):
    joblib.dump(model, tmp_path / "model.joblib")
    return joblib.load(tmp_path / "model.joblib")


def _save_load(model, tmp_path):
    model.save(tmp_path / "new" / "folder" / "model")  # created, as export_onnx creates its file's
    return type(model).load(tmp_path / "new" / "folder" / "model.json")


def _outputs(model, X):
    outputs = [model.predict(X)]
    if hasattr(model, "predict_proba"):
        outputs.append(model.predict_proba(X))
    return outputs


@pytest.mark.parametrize("round_trip", [_pickle, _joblib, _save_load], ids=["pickle", "joblib", "save_load"])
@pytest.mark.parametrize("name", ["regressor", "vanilla fallback", "strings", "integers", "booleans",
                                  "fixed dictionary"])
def test_round_trip_predicts_identically(fitted, name, round_trip, tmp_path):
    model = fitted[name]
    # each case keeps the network it is there for: only these two save a network without neighbours
    assert (model.selected_ == "vanilla") == (name in ("vanilla fallback", "booleans"))
    X = _table(n=30, seed=1)[0]
    copy = round_trip(model, tmp_path)
    assert type(copy) is type(model) and copy.get_params() == model.get_params()
    for before, after in zip(_outputs(model, X), _outputs(copy, X)):
        assert before.dtype == after.dtype
        np.testing.assert_array_equal(after, before)
    if hasattr(model, "classes_"):
        np.testing.assert_array_equal(copy.classes_, model.classes_)
        assert copy.classes_.dtype == model.classes_.dtype
    assert copy.network_ == model.network_ and copy.n_features_in_ == model.n_features_in_


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU, to pickle a network fitted there")
def test_a_network_fitted_on_a_gpu_unpickles_on_a_machine_without_one(tmp_path):
    """torch writes each tensor's device into a pickle: a network fitted on a GPU failed to load without one."""
    import subprocess
    import sys

    X, y = _table()
    model = MetaNeighborhoodsRegressor(**FAST, device="cuda").fit(X, y)
    joblib.dump(model, tmp_path / "model.joblib")
    assert next(model.model_.parameters()).is_cuda  # pickling left the fitted network where it was
    np.save(tmp_path / "X.npy", X)
    code = ("import sys, joblib, numpy as np; model = joblib.load(sys.argv[1]); "
            "np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))")
    subprocess.run([sys.executable, "-c", code, *(str(tmp_path / name) for name in ("model.joblib", "X.npy", "p.npy"))],
                   env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, check=True)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict(X), rtol=1e-5, atol=1e-6)


def test_pickling_an_estimator_leaves_its_network_where_it_is_and_pickles_a_cpu_copy():
    """What the GPU test above checks, without a GPU: a network that says it is on another device is copied to the
    CPU for the pickle, and the estimator keeps its own network, unmoved."""
    import types

    class OnAnotherDevice(torch.nn.Module):
        moved = False

        def state_dict(self, *args, **kwargs):
            return {"w": types.SimpleNamespace(device=torch.device("cuda"))}

        def cpu(self):
            self.moved = True
            return self

    estimator, network = MetaNeighborhoodsRegressor(), OnAnotherDevice()
    estimator.model_ = network
    state = estimator.__getstate__()
    assert estimator.model_ is network and not network.moved
    assert state["model_"] is not network and state["model_"].moved


def test_the_fallback_s_choice_survives_save_and_load(fitted, tmp_path):
    model = fitted["vanilla fallback"]
    assert model.selected_ == "vanilla" and set(model.validation_losses_) == {"meta_neighborhoods", "vanilla"}
    loaded = _save_load(model, tmp_path)
    saved_by = json.loads((tmp_path / "new" / "folder" / "model.json").read_text())["saved_by"]  # what saved it
    assert (saved_by["torch"], saved_by["threads"]) == (torch.__version__, torch.get_num_threads())
    assert (loaded.selected_, loaded.validation_losses_, loaded.network_["dictionary_size"]) == (
        "vanilla", model.validation_losses_, 0)


def test_save_writes_one_manifest_and_one_tensor_file(fitted, tmp_path):
    model = fitted["regressor"]
    assert model.save(tmp_path / "model") == tmp_path / "model.json"
    model.save(tmp_path / "model.json")  # the manifest's name works too, and replaces the previous checkpoint
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("model.") and files[0].endswith(".safetensors")
    assert files[1] == "model.json"
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["estimator"] == "MetaNeighborhoodsRegressor" and meta["params"]["hidden_layer_sizes"] == [16]
    assert meta["fitted"]["network_"] == {"n_features": 4, "n_outputs": 1, "dictionary_size": 8,
                                          "similarity": "euclidean", "temperature": 4.0}
    assert "meta_neighborhoods_version" in meta


def test_loading_as_the_wrong_class_is_refused(fitted, tmp_path):
    fitted["regressor"].save(tmp_path / "model")
    with pytest.raises(CheckpointError, match="holds a MetaNeighborhoodsRegressor, not a MetaNeighborhoodsClassifier"):
        MetaNeighborhoodsClassifier.load(tmp_path / "model")


def test_a_classify_checkpoint_is_not_an_estimator(tmp_path):
    args = {"method": "vanilla", "backbone": "convnet4", "in_channels": 1, "num_classes": 10, "dictionary_size": 0}
    save_checkpoint(tmp_path / "best", build_model(**args), model_args=args, epoch=1, validation_accuracy=0.5)
    with pytest.raises(CheckpointError, match="holds no estimator"):
        MetaNeighborhoodsClassifier.load(tmp_path / "best.json")


def _edit_manifest(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_a_tensor_file_holding_more_than_the_estimator_is_refused(fitted, tmp_path):
    """A tensor that no part of the estimator reads (the network, the fitted arrays, partial_fit's state) is
    refused, not ignored: the file is not what save wrote."""
    fitted["regressor"].save(tmp_path / "model")
    path = next(tmp_path.glob("model.*.safetensors"))
    tensors = {**safetensors.torch.load_file(path), "stray\nname": torch.zeros(1)}
    safetensors.torch.save_file(tensors, path)
    _edit_manifest(tmp_path / "model.json", lambda meta: meta.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    with pytest.raises(CheckpointError, match=r"model\.json: unknown tensors 'stray\\nname': refused$"):
        MetaNeighborhoodsRegressor.load(tmp_path / "model")


def test_a_file_from_another_configuration_is_refused(fitted, tmp_path):
    fitted["regressor"].save(tmp_path / "model")
    _edit_manifest(tmp_path / "model.json", lambda meta: meta["params"].update(hidden_layer_sizes=[32]))
    with pytest.raises(CheckpointError, match="written for another model configuration.*shapes differ"):
        MetaNeighborhoodsRegressor.load(tmp_path / "model")
    _edit_manifest(tmp_path / "model.json", lambda meta: meta["params"].update(inner_steps="three"))
    with pytest.raises(CheckpointError, match="does not describe a MetaNeighborhoodsRegressor.*inner_steps"):
        MetaNeighborhoodsRegressor.load(tmp_path / "model")


class _Payload:
    """Unpickling this creates ``marker``: the proof that a loader executed code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_damaged_truncated_and_foreign_files_are_named_and_never_executed(fitted, tmp_path):
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_Payload(marker))
    fitted["strings"].save(tmp_path / "model")
    manifest = tmp_path / "model.json"
    tensors = next(tmp_path.glob("model.*.safetensors"))

    data = tensors.read_bytes()
    tensors.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is damaged"):
        MetaNeighborhoodsClassifier.load(tmp_path / "model")

    tensors.write_bytes(payload)  # a pickle in the tensor file's place, even with a matching checksum
    with pytest.raises(CheckpointError, match="is damaged"):
        MetaNeighborhoodsClassifier.load(tmp_path / "model")
    _edit_manifest(manifest, lambda meta: meta.update(sha256=hashlib.sha256(payload).hexdigest()))
    with pytest.raises(CheckpointError, match="is not a valid safetensors file"):
        MetaNeighborhoodsClassifier.load(tmp_path / "model")

    (tmp_path / "evil.safetensors").write_bytes(payload)  # a pickle renamed, passed directly
    with pytest.raises(CheckpointError, match="is a tensor file, not a checkpoint"):
        MetaNeighborhoodsClassifier.load(tmp_path / "evil.safetensors")
    (tmp_path / "evil.json").write_bytes(payload)
    with pytest.raises(CheckpointError, match="not a readable checkpoint manifest"):
        MetaNeighborhoodsClassifier.load(tmp_path / "evil.json")

    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(CheckpointError, match="corrupt or truncated JSON"):
        MetaNeighborhoodsClassifier.load(manifest)
    with pytest.raises(FileNotFoundError, match="does not exist"):  # what torch.load and joblib raise
        MetaNeighborhoodsClassifier.load(tmp_path / "absent")
    assert not marker.exists()


def test_what_cannot_be_saved_is_named_before_anything_is_written(fitted, tmp_path):
    with pytest.raises(NotFittedError):
        MetaNeighborhoodsRegressor().save(tmp_path / "model")
    model = pickle.loads(pickle.dumps(fitted["regressor"]))
    model.set_params(random_state=np.random.RandomState(0))
    with pytest.raises(ValueError, match="cannot save parameter random_state=RandomState"):
        model.save(tmp_path / "model")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("change, message", [({"top_k": 2}, r"top_k \(128 at fit, 2 now\)"),
                                             ({"inner_steps": 3}, r"inner_steps \(1 at fit, 3 now\)"),
                                             ({"hidden_layer_sizes": (8,)}, "the weights' shapes")])
def test_parameters_set_after_fit_that_would_rebuild_another_network_are_refused(fitted, tmp_path, change, message):
    """save writes the parameters, and load rebuilds the network from them: a change since fit would load a
    network that predicts otherwise (top_k, inner_steps) or a file that its own load refuses (shapes)."""
    model = pickle.loads(pickle.dumps(fitted["regressor"]))
    state = torch.random.get_rng_state()
    model.set_params(learning_rate=0.5, key_lr_scale=0.5, slot_draw="batch")  # how it trains: the same network
    np.testing.assert_array_equal(_save_load(model, tmp_path).predict(_table()[0]), model.predict(_table()[0]))
    vanilla = pickle.loads(pickle.dumps(fitted["vanilla fallback"])).set_params(**change)
    if "hidden_layer_sizes" not in change:  # the fallback kept the network without neighbours: no setting of theirs
        np.testing.assert_array_equal(_save_load(vanilla, tmp_path).predict(_table()[0]),
                                      fitted["vanilla fallback"].predict(_table()[0]))
    model.set_params(**change)
    with pytest.raises(ValueError, match=f"set_params since fit changed {message}"):
        model.save(tmp_path / "changed")
    assert not list(tmp_path.glob("changed*")) and torch.equal(torch.random.get_rng_state(), state)


def _huge_network(meta):
    meta["fitted"]["network_"].update(n_features=10**9)
    meta["fitted"].update(n_features_in_=10**9)  # consistent, so that only the tensor file's shapes can tell


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_head_the_package_ships_is_saved_by_name_and_its_shapes_checked_on_load(tmp_path):
    """head="periodic" is a setting, not code: save writes it and load rebuilds it, its shapes checked first
    against the file's (a crafted size is refused before anything is allocated); a factory is still refused."""
    X, y = _table()
    model = MetaNeighborhoodsRegressor(head="periodic", hidden_layer_sizes=(8,), dictionary_size=16, max_epochs=3,
                                       random_state=0).fit(X, y)
    loaded = _save_load(model, tmp_path)
    assert loaded.head == "periodic"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    manifest = tmp_path / "new" / "folder" / "model.json"
    saved = manifest.read_text()
    for edit, message in [(_huge_network, r"sizes up to 1000000000, more than the tensor file's head holds"),
                          (lambda meta: meta["params"].update(head="mlp"),  # the file holds the periodic head's
                           r"shapes differ: head.layers.0.weight is None in the tensor file"),
                          (lambda meta: meta["params"].update(head="perodic"),
                           "unknown head 'perodic'; expected one of 'mlp', 'periodic'")]:
        manifest.write_text(saved)
        _edit_manifest(manifest, edit)
        with pytest.raises(CheckpointError, match=message):
            MetaNeighborhoodsRegressor.load(manifest)


@pytest.mark.parametrize("name, edit, message", [
    ("regressor", lambda meta: meta["fitted"].update(predict="x"), "unknown fitted attribute.*predict: refused"),
    ("regressor", lambda meta: meta["fitted"].update(__class__="x"), "unknown fitted attribute"),
    ("regressor", _huge_network, "sizes up to 1000000000, more than the tensor file's head holds"),
    ("regressor", lambda meta: meta["params"].update(hidden_layer_sizes=[10**9, 10**9]),
     "more than the 1,073,741,824 a fit builds"),
    ("regressor", lambda meta: meta["params"].update(hidden_layer_sizes=[1] * 100_000),  # was 13 s and 800 MB
     "ask for 100000 hidden layers and sizes up to 4, more than the tensor file's head holds"),
    ("regressor", lambda meta: meta["params"].update(hidden_layer_sizes=[3]), "shapes differ: head.layers.0.weight is"),
    ("regressor", lambda meta: meta["fitted"]["network_"].update(dictionary_size=10**12),
     "dictionary's keys do not match"),
    ("regressor", lambda meta: meta["fitted"].update(network_=[1, 2]), "network_ should hold n_features"),
    ("regressor", lambda meta: meta["fitted"].update(selected_="vanilla"), "selected_ should be 'meta_neighborhoods'"),
    ("booleans", lambda meta: meta["fitted"].update(selected_="all"), "selected_ should be 'vanilla'"),
    ("regressor", lambda meta: meta["fitted"].update(validation_losses_={"knn": 1.0}), "validation_losses_ should"),
    ("regressor", lambda meta: meta["fitted"].update(validation_losses_=[1.0]), "validation_losses_ should"),
    ("regressor", lambda meta: meta["fitted"].update(n_iter_="5"), "n_iter_ should be a non-negative integer"),
    ("regressor", lambda meta: meta["fitted"].update(best_loss_=[0.1]), "best_loss_ should be a number"),
    ("regressor", lambda meta: meta["fitted"].update(loss_curve_=[0.1, "x"]), "loss_curve_ should be a list"),
    ("regressor", lambda meta: meta["fitted"].update(loss_curve_=[10**400]), "loss_curve_ should be a list"),
    ("regressor", lambda meta: meta["fitted"].update(best_loss_=10**400), "best_loss_ should be a number"),
    ("regressor", lambda meta: meta["fitted"].update(validation_loss_curve_={}), "validation_loss_curve_ should"),
    ("regressor", lambda meta: meta["fitted"].update(n_features_in_=5), "n_features_in_ should be network_'s"),
    ("regressor", lambda meta: meta["fitted"].update(_y_ndim=3), "_y_ndim should be 1 or 2"),
    ("regressor", lambda meta: meta["fitted"].update(_y_ndim=True), "_y_ndim should be 1 or 2"),
    ("regressor", lambda meta: meta["fitted"].pop("_y_ndim"), "_y_ndim should be 1 or 2"),
    ("multioutput", lambda meta: meta["fitted"].update(_y_ndim=1), "_y_ndim should be 1 or 2 for one target, 2 for"),
    ("regressor", lambda meta: meta["fitted"]["network_"].update(similarity="manhattan"), "unknown similarity"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(values=["a", "b"]), "2 classes_ for 3 outputs"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="|O", values=[{"x": 1}, "b", "c"]),
     "classes_ should be a flat list of strings or numbers"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(values=[["a"], ["b"], ["c"]]), "a flat list"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="<U250000000"),  # 3 GB for three labels
     "holds strings of over 10000 characters"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="<U10000", values=[""] * 7000),  # 280 MB
     "of 7000 values of dtype <U10000 would take 280000000 bytes"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="<f8", values=[float("nan"), 1.0, 2.0]),
     "classes_ should hold finite values"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="|O", values=[float("nan"), 1.0, 2.0]),
     "classes_ should hold finite values"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="|O", values=["a", 1.0, float("-inf")]),
     "classes_ should hold finite values"),
    ("strings", lambda meta: meta["arrays"].update(junk={"dtype": "<U10000", "values": [""] * 7000}),
     "unknown fitted attribute\\(s\\) junk: refused"),  # before its 280 MB are built
    ("regressor", lambda meta: meta["arrays"].update(feature_names_in_={"dtype": "|O", "values": ["a"]}),
     "feature_names_in_ should name each of the 4 features once, got 1 names"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="<M8[ns]"), "a flat list of strings or numbers"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(dtype="|i1", values=[0, 1, 1000]), "OverflowError"),
    ("regressor", lambda meta: meta["params"].update(inner_steps=10**9), "inner_steps must be at most 100"),  # hung
    ("integers", lambda meta: meta["params"].pop("top_k"),  # had taken today's default, 128 keys
     r"model.json: no value for parameter\(s\) top_k, which this version's files hold: refused \(fit it again with "
     r"this version, or add to the file's \"params\" the value it was fitted with\)"),
    ("strings", lambda meta: meta["arrays"]["classes_"].update(values=["a", "a", "c"]), "classes_ should name each"),
    ("regressor", lambda meta: meta["params"].update(learning_rate=float("inf")), "learning_rate must be positive"),
    ("regressor", lambda meta: meta["params"].update(extractor="builtins.eval"),  # kept unchecked, never called
     r"model.json does not describe .*: extractor must be null: save writes no factory, got 'builtins.eval'"),
    ("regressor", lambda meta: meta["params"].update(device="xyz"), r"model.json does not .*: unknown device 'xyz'"),
    ("regressor", lambda meta: meta["params"].update(random_state={"a": 1}),
     r"model.json does not .*: random_state must be null or a seed from 0 to 2\*\*32 - 1, got \{'a': 1\}"),
])
def test_a_tampered_estimator_file_is_refused_before_anything_is_built(fitted, tmp_path, name, edit, message):
    fitted[name].save(tmp_path / "model")
    _edit_manifest(tmp_path / "model.json", edit)
    cls = type(fitted[name])
    with pytest.raises(CheckpointError, match=message):
        cls.load(tmp_path / "model")


def test_save_never_replaces_what_is_not_a_regular_file(fitted, tmp_path):
    """As root, export_onnx("/dev/null") replaced the system's /dev/null with a regular file."""
    os.mkfifo(tmp_path / "model.json")
    (tmp_path / "folder.json").mkdir()
    for stem in ("model", "folder"):
        with pytest.raises(FileExistsError, match=f"{stem}.json exists and is not a regular file"):
            fitted["regressor"].save(tmp_path / stem)
    assert (tmp_path / "folder.json").is_dir() and not (tmp_path / "model.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.json", "model.json"]


@pytest.mark.parametrize("name, value, message", [
    ("x_scale_", 0.0, "x_scale_ should hold positive values"),
    ("x_mean_", float("nan"), "x_mean_ should hold 4 finite float64 values"),
    ("y_scale_", 0.0, "y_scale_ should hold positive values"),  # predicted a constant
    ("y_scale_", float("nan"), "y_scale_ should hold 1 finite float64 values"),  # predicted NaN
    ("y_mean_", torch.zeros(7, dtype=torch.float64), "y_mean_ should hold 1 finite float64"),  # 28 values for 4 rows
    ("y_mean_", None, "y_mean_ should hold 1 finite float64 values"),  # predict's AttributeError
    ("x_mean_", torch.zeros(4, dtype=torch.int8), "x_mean_ should hold 4 finite float64 values, got int8"),  # was
    # taken, and rounded the means predict subtracts
    ("y_scale_", torch.ones(1, dtype=torch.float16), "got float16"),
])
def test_a_column_scale_that_would_break_predict_is_refused(fitted, tmp_path, name, value, message):
    """A saved scale of 0 loaded, and predict then blamed the rows ('lies too far outside the training data')."""
    fitted["regressor"].save(tmp_path / "model")
    tensors, meta = checkpoint.load(tmp_path / "model")
    if value is None or isinstance(value, torch.Tensor):
        tensors.pop(f"fitted.{name}")
        if value is not None:
            tensors[f"fitted.{name}"] = value
    else:
        tensors[f"fitted.{name}"][0] = value
    checkpoint.save(tmp_path / "model", tensors,
                    {k: v for k, v in meta.items() if k not in ("format", "version", "tensors", "sha256")})
    with pytest.raises(CheckpointError, match=message):
        MetaNeighborhoodsRegressor.load(tmp_path / "model")


def test_a_loaded_estimator_s_network_is_in_evaluation_mode_as_a_fitted_one(fitted, tmp_path):
    model = fitted["regressor"]
    model.save(tmp_path / "m")
    assert not model.model_.training and not type(model).load(tmp_path / "m").model_.training


def test_a_file_fitted_on_a_device_this_machine_lacks_loads_and_predicts(fitted, tmp_path):
    """Its device is checked by name, as fit checks it, but a GPU elsewhere is no fault of the file."""
    model = fitted["regressor"]
    model.save(tmp_path / "m")
    _edit_manifest(tmp_path / "m.json", lambda meta: meta["params"].update(device="cuda:99"))
    loaded = type(model).load(tmp_path / "m")
    X = _table()[0]
    assert loaded.device == "cuda:99" and np.array_equal(loaded.predict(X), model.predict(X))


def test_save_and_load_build_the_network_as_fit_does_through_no_private_method(fitted, tmp_path, monkeypatch):
    """persistence builds the network ``network_`` describes with ``factories.build_network``, the builder fit uses,
    not with a private method of the estimators."""
    from meta_neighborhoods import factories, persistence

    built = []
    monkeypatch.setattr(persistence, "build_network", lambda estimator, **network: built.append(network) or
                        factories.build_network(estimator, **network))
    model = fitted["regressor"]
    loaded = MetaNeighborhoodsRegressor.load(model.save(tmp_path / "model"))
    assert built == [model.network_, model.network_]  # save compares the parameters' network, load fills one
    assert not hasattr(MetaNeighborhoodsRegressor, "_build")
    np.testing.assert_array_equal(loaded.predict(_table()[0]), model.predict(_table()[0]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", ["regressor", "vanilla fallback"])
def test_a_warm_started_estimator_saves_loads_and_continues_the_network_it_kept(fitted, name, tmp_path):
    """A warm start continues the network fit kept, the vanilla fallback's too; the file keeps warm_start, and the
    loaded estimator continues from the loaded network."""
    import copy

    model = copy.deepcopy(fitted[name]).set_params(warm_start=True, max_epochs=1)
    X, y = noisy_line(d=4) if name == "vanilla fallback" else _table()
    network = dict(model.network_)
    model.fit(X, y)
    assert model.network_ == network and model.selected_ == fitted[name].selected_
    loaded = MetaNeighborhoodsRegressor.load(model.save(tmp_path / "model"))
    assert loaded.get_params() == model.get_params() and loaded.warm_start is True
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    loaded.set_params(learning_rate=1e-9, early_stopping=False).fit(X, y)
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), atol=1e-4)


def test_a_pickle_of_a_version_before_a_parameter_existed_loads_with_its_default(fitted, tmp_path):
    """A pickle made before warm_start existed (its state lacks the attribute) gets the parameter's default, and a
    warning naming it: its get_params, repr, fit and save work, as pickles of scikit-learn's own estimators do."""
    model = fitted["regressor"]
    state = pickle.loads(pickle.dumps(model)).__dict__
    del state["warm_start"]
    old = MetaNeighborhoodsRegressor.__new__(MetaNeighborhoodsRegressor)
    with pytest.warns(UserWarning, match="a pickled MetaNeighborhoodsRegressor of an earlier version lacks the "
                                         "parameter\\(s\\) warm_start: they take this version's defaults"):
        old.__setstate__(state)
    assert old.get_params()["warm_start"] is False and "MetaNeighborhoodsRegressor" in repr(old)
    X, y = _table()
    np.testing.assert_array_equal(old.predict(X), model.predict(X))
    assert old.save(tmp_path / "old").is_file()
    assert old.set_params(max_epochs=1).fit(X, y).n_iter_ == 1


def _junk(tensors, meta):
    meta["junk"] = [[]] * 3


def _flat_classes(tensors, meta):
    tensors["fitted.classes_"] = tensors["fitted.classes_"].reshape(-1, 1)


def _classes_twice(tensors, meta):
    meta["arrays"]["classes_"] = {"dtype": "<i8", "values": [0, 7]}


def _float64_weights(tensors, meta):
    name = next(name for name in tensors if name.endswith("head.layers.0.weight"))
    tensors[name] = torch.full_like(tensors[name], 1e300, dtype=torch.float64)


@pytest.mark.parametrize("damage, message", [
    (_junk, r"model\.json: unknown field\(s\) 'junk': refused"),
    (_flat_classes, r"classes_ should be a flat list of the classes, got shape \(2, 1\)"),
    (_classes_twice, r"fitted attribute\(s\) classes_ given twice"),
    (_float64_weights, r"weights of another dtype than the model's, the same shapes: .*head\.layers\.0\.weight .* "
                       r"torch\.float64 \(model: .* torch\.float32"),
    (lambda tensors, meta: meta["params"].update(dictionary_size={"a": 1}), "dictionary_size must be"),
    (lambda tensors, meta: meta["params"].update(temperature="x"), "temperature must be positive"),
    (lambda tensors, meta: meta["params"].update(temperature=1e39), r"temperature must be within float32's range"),
])
def test_a_saved_estimator_is_refused_for_any_field_that_save_would_not_have_written(fitted, tmp_path, damage,
                                                                                      message):
    """Found by a review: each of these loaded (float64 weights of 1e300 as infinities, which predict blamed on the
    rows; a parameter no one read until the next fit; classes_ as a column, or given twice, the tensor winning)."""
    fitted["integers"].save(tmp_path / "model")
    tensors, meta = checkpoint.load(tmp_path / "model")
    damage(tensors, meta)
    checkpoint.save(tmp_path / "model", tensors, {k: v for k, v in meta.items() if k not in checkpoint.MANIFEST_FIELDS})
    with pytest.raises(CheckpointError, match=message):
        MetaNeighborhoodsClassifier.load(tmp_path / "model")


def test_a_manifest_of_another_version_or_too_large_is_refused(fitted, tmp_path):
    fitted["regressor"].save(tmp_path / "model")
    _edit_manifest(tmp_path / "model.json", lambda meta: meta.update(version=True))  # True == 1 in Python
    with pytest.raises(CheckpointError, match="has checkpoint format version True"):
        MetaNeighborhoodsRegressor.load(tmp_path / "model")
    _edit_manifest(tmp_path / "model.json",
                   lambda meta: meta.update(version=1, junk="x" * checkpoint.MAX_MANIFEST_BYTES))
    with pytest.raises(CheckpointError, match="larger than 32 MiB"):
        MetaNeighborhoodsRegressor.load(tmp_path / "model")
