"""ONNX export: the whole adapted predictor (attention, inner steps, head) as one graph, run by onnxruntime."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from torch import nn

ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime: pip install '.[export]'")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript: pip install '.[export]'")
onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx: pip install '.[export]'")

import meta_neighborhoods  # noqa: E402
from meta_neighborhoods.cli import main  # noqa: E402
from meta_neighborhoods.estimators import MetaNeighborhoodsClassifier, MetaNeighborhoodsRegressor  # noqa: E402
from meta_neighborhoods.run_record import image_inputs, write_run_record  # noqa: E402
from meta_neighborhoods.image_methods import build_model, save_checkpoint  # noqa: E402
from meta_neighborhoods.runs import load_best_model  # noqa: E402
from meta_neighborhoods import export as export_module  # noqa: E402
from meta_neighborhoods.export import IMAGES, export_onnx  # noqa: E402
from meta_neighborhoods.heads import CosineHead, MLPHead  # noqa: E402
from meta_neighborhoods.io import sha256  # noqa: E402
from meta_neighborhoods.model import MetaNeighborhoods  # noqa: E402
from meta_neighborhoods.provenance import source_sha256  # noqa: E402

ATOL = 1e-5  # float32 graph against float32 PyTorch
FAST = dict(hidden_layer_sizes=(16,), dictionary_size=8, max_epochs=5, learning_rate=1e-2, random_state=0)


def _onnx(path, x) -> np.ndarray:
    return ort.InferenceSession(str(path)).run(["output"], {"input": np.asarray(x, dtype=np.float32)})[0]


@torch.no_grad()
def _torch(model, x) -> np.ndarray:
    return model.eval()(x).numpy()


def _mlp_model(steps, similarity, task):
    torch.manual_seed(0)
    return MetaNeighborhoods(MLPHead(5, (16, 8), 3), task=task, dictionary_size=12, similarity=similarity,
                             temperature=0.5, inner_steps=steps, step_size_init=0.3).eval()


@pytest.mark.parametrize("steps,similarity,task", [(1, "euclidean", "regression"), (1, "cosine", "classification"),
                                                   (2, "euclidean", "classification"), (2, "cosine", "regression")])
def test_adapted_mlp_is_one_graph_with_a_free_batch(tmp_path, steps, similarity, task):
    model = _mlp_model(steps, similarity, task)
    path = export_onnx(model, torch.randn(4, 5), tmp_path / "model.onnx")
    x = torch.randn(7, 5)  # another batch size than the export's
    expected = _torch(model, x)
    np.testing.assert_allclose(_onnx(path, x), expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(_onnx(path, x[:1]), expected[:1], atol=ATOL, rtol=0)
    with torch.no_grad():  # the graph holds the adaptation: the head alone answers differently
        assert np.abs(model.head(x).numpy() - expected).max() > 1e-2
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # written atomically: no temporary file left


def test_a_top_k_model_exported_from_a_few_rows_keeps_every_key(tmp_path):
    """A few rows at evaluation pass only their keys through the inner loop (``predict_top_k``); the graph must not
    take that data-dependent path from its example, or its batch would be fixed."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(5, (16,), 2), dictionary_size=41, top_k=2, step_size_init=0.3).eval()
    path = export_onnx(model, torch.randn(2, 5), tmp_path / "model.onnx")  # 41 keys / k = 2: no whole bound
    assert "NonZero" not in {node.op_type for node in onnx.load(path).graph.node}
    x = torch.randn(30, 5)
    np.testing.assert_allclose(_onnx(path, x), _torch(model, x), atol=ATOL, rtol=0)
    np.testing.assert_allclose(_onnx(path, x[:1]), _torch(model, x[:1]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("head", ["cosine", "mlp", "images"])
def test_a_graph_exported_from_one_row_keeps_its_batch_free(tmp_path, head):
    """torch.export fixes an example's size 1 as a constant; the cosine head's inner loop was traced so."""
    torch.manual_seed(0)
    if head == "images":
        model, dims, x = build_model("mn_ifilm", "convnet4", 1, 10, dictionary_size=20).eval(), IMAGES, (5, 1, 12, 16)
    else:
        net = CosineHead(5, 3) if head == "cosine" else MLPHead(5, (16,), 3)
        model, dims, x = MetaNeighborhoods(net, task="classification", dictionary_size=12).eval(), {0: "batch"}, (5, 5)
    example = torch.randn(1, *x[1:]) if head != "images" else torch.randn(1, 1, 1, 1)
    path = export_onnx(model, example, tmp_path / "model.onnx", dims)
    x = torch.randn(x)
    np.testing.assert_allclose(_onnx(path, x), _torch(model, x), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="no batch .dimension 0 is 0"):
        export_onnx(model, example[:0], tmp_path / "empty.onnx", dims)


def test_vanilla_model(tmp_path):
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(5, (16,), 3), dictionary_size=0).eval()
    path = export_onnx(model, torch.randn(4, 5), tmp_path / "vanilla.onnx")
    x = torch.randn(7, 5)
    np.testing.assert_allclose(_onnx(path, x), _torch(model, x), atol=ATOL, rtol=0)


def test_cosine_head_with_ifilm_image_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("mn_ifilm", "convnet4", 1, 10, dictionary_size=20).eval()
    path = export_onnx(model, torch.randn(4, 1, 16, 16), tmp_path / "images.onnx", IMAGES)
    for shape in ((7, 1, 16, 16), (2, 1, 12, 20)):  # batch, height and width are free
        x = torch.randn(shape)
        expected = _torch(model, x)
        np.testing.assert_allclose(_onnx(path, x), expected, atol=ATOL, rtol=0)
    with torch.no_grad():
        assert np.abs(model.head(model.features(x)).numpy() - expected).max() > 1e-4


def test_generic_implementation_exports_through_the_fast_path_without_changing_the_model(tmp_path):
    model = MetaNeighborhoods(MLPHead(5, (8,), 2), dictionary_size=6, implementation="generic", step_size_init=0.3)
    path = export_onnx(model, torch.randn(4, 5), tmp_path / "generic.onnx")
    x = torch.randn(7, 5)
    np.testing.assert_allclose(_onnx(path, x), _torch(model, x), atol=ATOL, rtol=0)
    assert model.adaptation.implementation == "generic"


class ConstantHead(nn.Module):
    """A custom head: only the generic torch.func inner loop applies to it."""

    def __init__(self):
        super().__init__()
        self.in_features, self.out_features = 5, 1
        self.c = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.c.expand(x.shape[0], 1)


def test_a_head_without_fast_path_is_refused_clearly(tmp_path):
    model = MetaNeighborhoods(ConstantHead(), dictionary_size=4)
    with pytest.raises(ValueError, match="cannot export the inner loop of a ConstantHead head.*MLPHead, CosineHead"):
        export_onnx(model, torch.randn(4, 5), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


class PinsTheBatch(nn.Module):
    def forward(self, x):
        return x.reshape(len(x), -1) * 2  # len(): a Python int the exporter can only fix


def test_a_batch_size_the_exporter_fixes_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match=r"fixed batch \(dimension 0\) = 4.*x.shape"):
        export_onnx(PinsTheBatch(), torch.randn(4, 3), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 5)) * 3 + 10  # far from standardised: the graph must standardise
    y = np.sin(X[:, 0]) + 0.2 * X[:, 1]
    labels = np.array(["cat", "dog", "emu"])[(X[:, 0] > 10).astype(int) + (X[:, 1] > 12)]
    return X, y, labels


def test_regressor_graph_gives_predict_on_raw_rows(tmp_path, table):
    X, y, _ = table
    model = MetaNeighborhoodsRegressor(**FAST).fit(X, y)
    model.export_onnx(tmp_path / "regressor.onnx")
    np.testing.assert_allclose(_onnx(tmp_path / "regressor.onnx", X), model.predict(X), atol=ATOL, rtol=0)
    two = MetaNeighborhoodsRegressor(**FAST).fit(X, np.c_[y, 2 * y])  # several targets: one column each
    two.export_onnx(tmp_path / "two.onnx")
    np.testing.assert_allclose(_onnx(tmp_path / "two.onnx", X[:7]), two.predict(X[:7]), atol=ATOL, rtol=0)


def test_an_estimator_with_top_k_attention_exports(tmp_path, table):
    """Top-k attention on more keys than k, 60 keys at k = 8 (the defaults' case on any table under 4,550 rows):
    the graph's free batch must not meet the few-rows path's test of rows x k against the keys."""
    X, y, _ = table
    model = MetaNeighborhoodsRegressor(**{**FAST, "dictionary_size": 60, "top_k": 4}).fit(X, y)
    assert model.model_.config.neighbourhood_size(training=False) == 8 and model.model_.dictionary.size == 60
    model.export_onnx(tmp_path / "top_k.onnx")
    np.testing.assert_allclose(_onnx(tmp_path / "top_k.onnx", X), model.predict(X), atol=ATOL, rtol=0)
    np.testing.assert_allclose(_onnx(tmp_path / "top_k.onnx", X[:1]), model.predict(X[:1]), atol=ATOL, rtol=0)


def test_the_estimators_graph_takes_float32_rows_whatever_torch_s_default_dtype(tmp_path, table):
    """The estimators compute in float32 under a float64 default; their graph must too (it mixed both, and
    onnxruntime refused to load it)."""
    X, y, _ = table
    model = MetaNeighborhoodsRegressor(**FAST).fit(X, y)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model.export_onnx(tmp_path / "regressor.onnx")
    finally:
        torch.set_default_dtype(previous)
    np.testing.assert_allclose(_onnx(tmp_path / "regressor.onnx", X), model.predict(X), atol=ATOL, rtol=0)


@pytest.mark.parametrize("cls", [MetaNeighborhoodsRegressor, MetaNeighborhoodsClassifier])
def test_a_network_made_float64_saves_loads_and_exports_as_float64(tmp_path, table, cls):
    """As the estimators' docs allow (``model_`` made float64): load had refused its file (weights of another dtype)
    and export_onnx its float32 example input; the graph takes float64 rows, and ``onnx_output`` gives it those."""
    X, y, labels = table
    model = cls(**FAST).fit(X, y if cls is MetaNeighborhoodsRegressor else labels)
    model.model_.double()
    answer = model.predict if cls is MetaNeighborhoodsRegressor else model.predict_proba
    loaded = cls.load(model.save(tmp_path / "model"))
    assert next(loaded.model_.parameters()).dtype == torch.float64
    loaded_answer = loaded.predict if cls is MetaNeighborhoodsRegressor else loaded.predict_proba
    np.testing.assert_array_equal(loaded_answer(X), answer(X))
    model.export_onnx(tmp_path / "model.onnx")
    graph = ort.InferenceSession(str(tmp_path / "model.onnx"))
    assert graph.get_inputs()[0].type == "tensor(double)"
    np.testing.assert_allclose(graph.run(["output"], {"input": X})[0], answer(X), atol=1e-6, rtol=0)  # predict's
    # standardised rows are float32
    rows = X.astype(np.float32)  # as the CLI's export checks a graph: given float64 for this one
    np.testing.assert_allclose(export_module.onnx_output(tmp_path / "model.onnx", rows), answer(rows), atol=1e-6)
    mixed = cls(**FAST, vanilla_fallback=False).fit(X, y if cls is MetaNeighborhoodsRegressor else labels)
    mixed.model_.head.double()  # the head alone: refused (onnxruntime cannot load such a graph), and unchanged
    with pytest.raises(TypeError, match="the module's weights are of several dtypes, torch.float32, torch.float64"):
        mixed.export_onnx(tmp_path / "mixed.onnx")
    assert mixed.model_.dictionary.keys.dtype == torch.float32  # a review saw export make it float64
    assert not (tmp_path / "mixed.onnx").exists()


def test_an_example_input_of_another_dtype_than_the_weights_is_refused(tmp_path):
    model = MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=6, top_k=2).eval()
    with pytest.raises(TypeError, match="example input is torch.float64 but the module's weights are torch.float32"):
        export_onnx(model, torch.zeros(2, 4, dtype=torch.float64), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_classifier_graph_gives_predict_proba_on_raw_rows(tmp_path, table):
    X, _, labels = table
    model = MetaNeighborhoodsClassifier(**FAST, inner_steps=2).fit(X, labels)
    path = model.export_onnx(tmp_path / "classifier.onnx")
    probabilities = _onnx(path, X[:7])
    np.testing.assert_allclose(probabilities, model.predict_proba(X[:7]), atol=ATOL, rtol=0)
    np.testing.assert_array_equal(model.classes_[probabilities.argmax(1)], model.predict(X[:7]))
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}  # what reads the columns without Python
    assert json.loads(meta.pop("classes")) == ["cat", "dog", "emu"] and "feature_names" not in meta
    exported_by = json.loads(meta.pop("exported_by"))  # what exported it: the code, versions, command
    assert exported_by["source_sha256"] == source_sha256() and exported_by["torch"] == torch.__version__
    assert meta == {"estimator": "MetaNeighborhoodsClassifier", "selected": model.selected_,
                    "meta_neighborhoods": meta_neighborhoods.__version__}


def test_the_estimators_graph_names_the_features_fit_saw(tmp_path, table):
    pd = pytest.importorskip("pandas")
    X, y, _ = table
    frame = pd.DataFrame(X, columns=["e", "d", "c", "b", "a"])
    path = MetaNeighborhoodsRegressor(**FAST).fit(frame, y).export_onnx(tmp_path / "regressor.onnx")
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(meta["feature_names"]) == ["e", "d", "c", "b", "a"] and "classes" not in meta


CLASSES = ["cat", "dog", "emu", "yak"]
MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


def _run_folder(path, method="mn"):
    """A run folder as classify leaves it (best checkpoint with its model_args, config.json, run.json); no data
    needed."""
    path.mkdir()
    args = {"method": method, "backbone": "convnet4", "in_channels": 3, "num_classes": 4, "dictionary_size": 8}
    torch.manual_seed(0)
    save_checkpoint(path / "best", build_model(**args), model_args=args, epoch=1, validation_accuracy=0.5)
    (path / "config.json").write_text(json.dumps({"dataset": "cifar10", "method": method, "model": args}))
    write_run_record(path, {"classes": CLASSES, "input": image_inputs((10, 3, 32, 32), MEAN, STD)})
    return path


def test_a_run_that_classify_is_still_writing_is_not_exported(tmp_path, capsys):
    """Its best checkpoint is replaced every epoch: export took whichever epoch's it met, and the graph said nothing
    of it."""
    from meta_neighborhoods import io

    run, out = _run_folder(tmp_path / "run"), tmp_path / "model.onnx"
    with io.lock(run):
        assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(out)]) == 1
    assert f"{run} is being written by process {os.getpid()}" in capsys.readouterr().err and not out.exists()


def test_cli_exports_a_run_and_checks_it(tmp_path, capsys):
    run, out = _run_folder(tmp_path / "run"), tmp_path / "deploy" / "model.onnx"
    assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out  # the result on stdout, the file written as a message on stderr
    assert printed.startswith(f"{out} (onnx)") and "max |onnxruntime - PyTorch| = " in printed
    assert f"meta-neighborhoods export: wrote {out}\n" in captured.err
    assert float(printed.split("= ")[-1].split()[0]) < ATOL
    model = load_best_model(run)[0]
    x = torch.randn(5, 3, 24, 24)
    np.testing.assert_allclose(_onnx(out, x), _torch(model, x), atol=ATOL, rtol=0)
    assert main(["export", "--run", str(run / "best.json"), "--out", str(tmp_path / "other.onnx")]) == 1
    assert ("best.json is a checkpoint of a classify run, not a saved estimator (a fit's folder): export takes the "
            f"run's folder, {run}") in capsys.readouterr().err  # it had said: "holds no estimator ... ('None')"


def test_the_graph_carries_the_normalisation_and_the_class_names(tmp_path):
    """A deployment reads from the file alone how to scale its images and what each output column is."""
    onnx = pytest.importorskip("onnx")
    run, out = _run_folder(tmp_path / "run"), tmp_path / "model.onnx"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    metadata = {prop.key: prop.value for prop in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["classes"]) == CLASSES
    assert json.loads(metadata["input_mean"]) == MEAN and json.loads(metadata["input_std"]) == STD
    assert (metadata["input_channels"], metadata["input_height"], metadata["input_width"]) == ("3", "32", "32")
    assert metadata["input_layout"] == "NCHW" and metadata["input_scale"] == "255"
    assert "(pixels / 255 - mean) / std" in metadata["input_transform"]
    assert metadata["input_pixels"] == "the data set's 8-bit pixels as its files hold them"
    assert (metadata["method"], metadata["backbone"]) == ("mn", "convnet4")
    assert metadata["checkpoint_sha256"] == sha256(run / "best.json")  # which checkpoint, of a run's several
    assert json.loads(metadata["exported_by"])["source_sha256"] == source_sha256()


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "run.json").unlink(), "run.json is missing: removed, or the run was written by an older "
     "version of meta-neighborhoods that did not record it"),
    (lambda run: write_run_record(run, {"classes": CLASSES[:3], "input": image_inputs((1, 3, 8, 8), MEAN, STD)}),
     "run.json names 3 classes of 3-channel images, but the best checkpoint's network has 4 outputs"),
    (lambda run: write_run_record(run, {"classes": CLASSES, "input": image_inputs((1, 3, 8, 8), MEAN, [0, 1, 1])}),
     "run.json: input should give"),
])
def test_a_run_without_a_sound_record_of_its_inputs_is_not_exported(tmp_path, capsys, damage, message):
    run = _run_folder(tmp_path / "run")
    damage(run)
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "m.onnx")]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_cli_bad_inputs_are_reported(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", method="vanilla")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--run", str(run), "--format", "tflite", "--out", str(tmp_path / "m.tflite")])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err

    assert main(["export", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert f"run folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "best.json is missing" in capsys.readouterr().err

    (tmp_path / "file").write_text("")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "file" / "m.onnx")]) == 1
    assert "cannot write to output directory" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--out", str(run)]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_a_run_that_is_a_file_is_named_as_such_not_as_missing(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["export", "--run", str(tmp_path / "afile"), "--out", str(tmp_path / "m.onnx")]) == 1
    error = capsys.readouterr().err
    assert error == f"meta-neighborhoods export: error: run folder {tmp_path / 'afile'} is not a folder\n"


def test_cli_names_the_missing_export_dependencies(tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "onnxscript" else find_spec(name, *rest))
    run = _run_folder(tmp_path / "run", method="vanilla")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "pip install 'meta-neighborhoods[export]'" in capsys.readouterr().err


def test_a_network_with_nan_weights_is_not_exported(tmp_path):
    model = MetaNeighborhoods(MLPHead(5, (8,), 2), dictionary_size=6)
    with torch.no_grad():
        model.head.layers[0].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="cannot export a network with NaN or infinite values"):
        export_onnx(model, torch.randn(4, 5), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_an_existing_file_is_replaced_only_when_asked_and_only_by_a_graph_that_passed_its_check(tmp_path, capsys,
                                                                                               monkeypatch):
    run, out = _run_folder(tmp_path / "run", method="vanilla"), tmp_path / "model.onnx"
    out.write_text("an earlier export")
    assert main(["export", "--run", str(run), "--out", str(out)]) == 1
    assert f"{out} already exists: replace it with --overwrite" in capsys.readouterr().err
    (run / ".lock").write_text("")
    for name in ("best.json", "run.json", ".lock"):  # the run's own files, even when asked
        before = (run / name).read_bytes()
        assert main(["export", "--run", str(run), "--out", str(run / name), "--overwrite"]) == 1
        assert "is a file of the run being exported" in capsys.readouterr().err
        assert (run / name).read_bytes() == before
    monkeypatch.setattr(export_module, "max_difference", lambda *args: float("nan"))  # a graph that fails its check
    assert main(["export", "--run", str(run), "--out", str(out), "--overwrite"]) == 1
    assert "nothing was written" in capsys.readouterr().err
    assert out.read_text() == "an earlier export" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "run"]
    monkeypatch.undo()
    assert main(["export", "--run", str(run), "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != b"an earlier export" and _onnx(out, torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_export_never_replaces_a_device_or_a_pipe_even_when_asked(tmp_path, capsys):
    run, pipe = _run_folder(tmp_path / "run", method="vanilla"), tmp_path / "pipe.onnx"
    os.mkfifo(pipe)
    assert main(["export", "--run", str(run), "--out", str(pipe), "--overwrite"]) == 1
    assert "pipe.onnx exists and is not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(pipe.lstat().st_mode)


def test_the_run_s_lock_file_is_no_destination(tmp_path):
    from meta_neighborhoods.export import export_run

    (tmp_path / ".lock").write_text("process 1")
    with pytest.raises(FileExistsError, match="is a file of the run being exported"):
        export_run(tmp_path, tmp_path / ".lock", overwrite=True)
    assert (tmp_path / ".lock").read_text() == "process 1"


def test_the_scratch_folder_a_killed_export_left_is_named_by_the_next_and_left_as_it_is(tmp_path, caplog):
    """SIGKILL runs no cleanup: an export killed while it wrote or checked its graph left its hidden scratch folder
    beside --out, unsaid. The next export of that name names it; it removes nothing (the folder may be that of an
    export running now), nor names a folder of another name or a link."""
    run, out = _run_folder(tmp_path / "run", method="vanilla"), tmp_path / "model.onnx"
    killed = tmp_path / ".model.onnx.k1ll3d_0"
    killed.mkdir()
    (killed / "model.onnx").write_bytes(b"half a graph")
    others = [tmp_path / ".model.onnx.SHORT", tmp_path / ".other.onnx.k1ll3d_0"]
    for folder in others:
        folder.mkdir()
    (tmp_path / ".model.onnx.linked_1").symlink_to(killed, target_is_directory=True)
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0 and out.is_file()
    named = [record.getMessage() for record in caplog.records if "scratch folder" in record.getMessage()]
    assert len(named) == 1 and str(killed) in named[0] and "remove it" in named[0]
    assert (killed / "model.onnx").read_bytes() == b"half a graph" and all(folder.is_dir() for folder in others)
    assert sorted(p.name for p in tmp_path.glob(".model.onnx.*")) == [".model.onnx.SHORT", ".model.onnx.k1ll3d_0",
                                                                       ".model.onnx.linked_1"]  # its own is gone

def test_a_graph_is_not_moved_over_a_file_written_while_it_was_checked(tmp_path):
    out = tmp_path / "model.onnx"

    def write(candidate):
        candidate.write_bytes(b"graph")
        out.write_text("the user's")  # meanwhile
        return candidate

    with pytest.raises(FileExistsError, match="written by something else while this ran"):
        export_module.write_checked(out, write, lambda candidate: 0.0)
    assert out.read_text() == "the user's" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert export_module.write_checked(out, write, lambda candidate: 0.0, replace=True) == 0.0
    assert out.read_bytes() == b"graph"
