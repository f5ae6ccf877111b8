"""Checkpoints: safe format, atomic commits, exact training state, NaN stop, and every way a checkpoint can be bad."""

import hashlib
import json
import random

import numpy as np
import pytest
import torch

from meta_neighborhoods import checkpoint
from meta_neighborhoods.callbacks import Callback
from meta_neighborhoods.cli import main
from meta_neighborhoods.image_methods import build_model, load_checkpoint, save_checkpoint
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.datasets.batches import TensorBatches
from meta_neighborhoods.training import OptimizerSpec, fit

ARGS = {"method": "mn", "backbone": "convnet4", "in_channels": 1, "num_classes": 3, "dictionary_size": 8}


def _weights(stem):
    return stem.parent / json.loads(stem.with_name(stem.name + ".json").read_text())["tensors"]


def _regression_model(seed=0):
    torch.manual_seed(seed)
    return MetaNeighborhoods(MLPHead(3, (8,), 1), dictionary_size=6)


def _data(n=64):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=generator), torch.randn(n, 1, generator=generator)


def test_round_trip_keeps_every_tensor_and_the_metadata(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.tensor(2.5, dtype=torch.float64)}
    checkpoint.save(tmp_path / "ck", tensors, {"step": 7, "note": "hello"})
    loaded, meta = checkpoint.load(tmp_path / "ck")
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert (meta["step"], meta["note"], meta["format"]) == (7, "hello", checkpoint.FORMAT)


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch, snapshot):
    stem = tmp_path / "last"
    checkpoint.save(stem, {"w": torch.ones(4)}, {"step": 1})
    before = snapshot(tmp_path)

    def crash(tensors, path):
        with open(path, "wb") as file:
            file.write(b"half a fi")  # the process dies mid-write
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(stem, {"w": torch.zeros(4)}, {"step": 2})
    assert snapshot(tmp_path) == before  # no temporary file left, nothing replaced
    tensors, meta = checkpoint.load(stem)
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(4))


def test_a_new_commit_removes_the_stale_weights(tmp_path):
    for step in range(3):
        checkpoint.save(tmp_path / "last", {"w": torch.full((2,), float(step))}, {"step": step})
    assert len(list(tmp_path.glob("last.*.safetensors"))) == 1
    assert checkpoint.load(tmp_path / "last")[1]["step"] == 2


def test_an_interrupt_at_the_commit_leaves_no_stale_weights(tmp_path, monkeypatch):
    """Found by a trial: SIGTERM between the manifest's rename and the removal of the weights it replaced left two
    tensor files beside one manifest. The interrupt now comes once both are done."""
    import signal

    checkpoint.save(tmp_path / "last", {"w": torch.zeros(2)}, {"step": 0})
    write_json = checkpoint.write_json

    def interrupted(*args, **kwargs):
        written = write_json(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # delivered as Ctrl-C would be, just after the commit
        return written

    monkeypatch.setattr(checkpoint, "write_json", interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: a test worker may ignore it
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(tmp_path / "last", {"w": torch.ones(2)}, {"step": 1})
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(list(tmp_path.glob("last.*.safetensors"))) == 1
    assert checkpoint.load(tmp_path / "last")[1]["step"] == 1


def test_rng_states_are_restored_exactly():
    tensors, meta = checkpoint.rng_state()
    meta = json.loads(json.dumps(meta))  # what a checkpoint stores
    expected = torch.rand(3), np.random.rand(3), random.random()
    checkpoint.load_rng(tensors, meta)
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_resumed_fit_equals_uninterrupted_fit(tmp_path):
    """Two epochs, then a fresh process-like restart (new model, new batches) for two more, against four."""
    x, y = _data()
    options = dict(optimizer=OptimizerSpec(1e-2, 1e-3, milestones=(3,), grad_clip=1.0))
    reference = _regression_model()
    history = fit(reference, TensorBatches(x, y, batch_size=16), epochs=4, **options)

    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=2, last=stem, **options)
    torch.manual_seed(123)  # the restarted process's RNG is elsewhere: the checkpoint must restore it
    resumed_model = _regression_model(seed=1)
    batches = TensorBatches(x, y, batch_size=16, seed=5)  # the checkpoint restores where the shuffling stood
    resumed = fit(resumed_model, batches, epochs=4, last=stem, resume=True, **options)
    assert resumed == history
    for (name, a), b in zip(reference.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = _data()
    model, stem = _regression_model(), tmp_path / "last"

    class Poison(Callback):
        def on_step(self, step):
            if step == 6:  # epoch 2 (4 steps per epoch)
                with torch.no_grad():
                    model.head.layers[0].weight.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match=r"became nan at epoch 2, step 7.*epoch 1\) is kept at"):
        fit(model, TensorBatches(x, y, batch_size=16), epochs=3, last=stem, callbacks={"poison": Poison()})
    tensors, meta = checkpoint.load(stem)
    assert meta["epoch"] == 1 and all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


# ---------------------------------------------------------------------------------------------------
# Bad checkpoints: each gives a CheckpointError naming the problem and leaves every file as it was


def _saved(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "best", build_model(**ARGS), model_args=ARGS, epoch=1)
    return tmp_path / "best"


def _other_configuration(stem):
    return lambda: load_checkpoint(stem, build_model(**{**ARGS, "dictionary_size": 16}))


def _flip_a_byte(stem):
    weights = _weights(stem)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))


def _truncate_weights(stem):
    weights = _weights(stem)
    weights.write_bytes(weights.read_bytes()[:1000])


def _truncate_manifest(stem):
    manifest = stem.with_name("best.json")
    manifest.write_text(manifest.read_text()[:50])


def _pickle_in_place_of_safetensors(stem):
    """A pickle under the safetensors name, with the manifest's checksum updated so only the format is wrong."""
    weights = _weights(stem)
    torch.save({"state_dict": build_model(**ARGS).state_dict()}, weights)
    manifest = stem.with_name("best.json")
    meta = json.loads(manifest.read_text())
    meta["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(meta))


def _missing_weights(stem):
    _weights(stem).unlink()


def _foreign_json(stem):
    stem.with_name("best.json").write_text(json.dumps({"state_dict": "elsewhere"}))


BAD_CHECKPOINTS = [
    pytest.param(None, "written for another model configuration: shapes or types differ: dictionary.keys",
                 id="another-configuration"),
    pytest.param(_flip_a_byte, "is damaged: its sha256 differs", id="corrupt-weights"),
    pytest.param(_truncate_weights, "is damaged: its sha256 differs", id="truncated-weights"),
    pytest.param(_truncate_manifest, "corrupt or truncated JSON", id="truncated-manifest"),
    pytest.param(_pickle_in_place_of_safetensors, "is not a valid safetensors file", id="pickle-not-safetensors"),
    pytest.param(_missing_weights, r"names best\.\w+\.safetensors, which is missing", id="missing-weights"),
    pytest.param(_foreign_json, "is not a meta-neighborhoods checkpoint", id="foreign-json"),
]


def test_weights_of_another_dtype_are_named_as_such(tmp_path):
    """Not "another model configuration": a float32 checkpoint loaded into a float64 copy of its model."""
    stem = _saved(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"weights of another dtype than the model's, the same "
                                                         r"shapes: .*torch\.float32 \(model: .* torch\.float64\)"):
        load_checkpoint(stem, build_model(**ARGS).double())


@pytest.mark.parametrize("damage, message", BAD_CHECKPOINTS)
def test_a_bad_checkpoint_is_refused_and_left_as_it_was(tmp_path, damage, message, snapshot):
    stem = _saved(tmp_path)
    load = _other_configuration(stem) if damage is None else (lambda: load_checkpoint(stem, build_model(**ARGS)))
    if damage is not None:
        damage(stem)
    before = snapshot(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=message) as error:
        load()
    assert "torch" not in str(error.traceback[-1].path)
    assert snapshot(tmp_path) == before


def test_resume_needs_a_run_and_its_own_configuration(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["classify", "--resume", str(tmp_path / "empty"), "--quiet"]) == 1
    assert "nothing to resume in" in capsys.readouterr().err
    assert not list((tmp_path / "empty").iterdir())
    assert main(["classify", "--resume", str(tmp_path), "--epochs", "3", "--quiet"]) == 2
    assert "--resume continues a run with its saved configuration; drop --epochs" in capsys.readouterr().err
    assert main(["classify", "--dataset", "digits", "--quiet"]) == 2
    assert "classify needs --backbone, --method, --out (or --resume DIR" in capsys.readouterr().err


def test_a_checkpoint_of_another_run_configuration_is_refused(tmp_path, snapshot):
    x, y = _data()
    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=1, last=stem,
        config={"epochs": 2})
    before = snapshot(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"another configuration \(epochs: 2 there, 3 here\)"):
        fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=2, last=stem, resume=True,
            config={"epochs": 3})
    assert snapshot(tmp_path) == before


def test_a_refused_resume_names_three_differences_and_counts_the_rest(tmp_path):
    x, y = _data()
    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=1, last=stem, config=dict(a=1, b=1, c=1, d=1))
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"\(a: 1 there, 2 here; b: 1 there, 2 here; c: 1 there, 2 here; and 1 more\)"):
        fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=2, last=stem, resume=True,
            config=dict(a=2, b=2, c=2, d=2))


def test_a_checkpoint_without_a_stateful_field_is_refused_by_name(tmp_path, snapshot):
    """A checkpoint from a version whose best-so-far tracker kept fewer fields: named, not a KeyError."""

    class Tracker(Callback):
        def __init__(self, fields):
            self.fields = fields

        def state_dict(self):
            return dict.fromkeys(self.fields, 0.0)

        def load_state_dict(self, state):
            self.values = [state[field] for field in self.fields]

    x, y = _data()
    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=1, last=stem,
        callbacks={"best": Tracker(["accuracy"])})
    before = snapshot(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="lacks 'loss' for 'best': it was written by another version"):
        fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=2, last=stem, resume=True,
            callbacks={"best": Tracker(["accuracy", "loss"])})
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------------
# Untrusted files: only the checkpoint's own files are read, written or removed


def _small_checkpoint(stem):
    return checkpoint.save(stem, {"w": torch.ones(2)}, {"epoch": 1})


def test_save_removes_only_its_own_earlier_files(tmp_path):
    others = ["model.backup.safetensors", "model.fp16.safetensors", "run1.0123abcd.safetensors",
              "run2.0123abcd.safetensors", "model.json.bak", ".model.other.tmp"]
    for name in others:
        (tmp_path / name).write_text("keep me")
    _small_checkpoint(tmp_path / "model")
    _small_checkpoint(tmp_path / "model")
    _small_checkpoint(tmp_path / "run[12]")
    assert all((tmp_path / name).read_text() == "keep me" for name in others)
    assert len(list(tmp_path.glob("model.*.safetensors"))) == 1 + 2  # its own latest, and the two others


def test_the_next_save_removes_what_a_killed_write_left(tmp_path):
    stem = tmp_path / "last"
    _small_checkpoint(stem)
    leftovers = [tmp_path / ".last.0123abcd.safetensors.k3j2h1.tmp", tmp_path / ".last.json.x9y8z7.tmp"]
    for path in leftovers:
        path.write_bytes(b"\0" * 100)
    _small_checkpoint(stem)
    assert not any(path.exists() for path in leftovers)
    assert checkpoint.load(stem)[1]["epoch"] == 1


@pytest.mark.parametrize("target", ["manifest", "tensors"])
def test_a_symlinked_checkpoint_file_is_refused(tmp_path, target):
    outside = tmp_path / "outside"
    outside.mkdir()
    _small_checkpoint(outside / "best")
    folder = tmp_path / "run"
    folder.mkdir()
    manifest = _small_checkpoint(folder / "best")
    if target == "manifest":
        manifest.unlink()
        manifest.symlink_to(outside / "best.json")
    else:
        name = json.loads(manifest.read_text())["tensors"]
        (folder / name).unlink()
        (folder / name).symlink_to(next(outside.glob("best.*.safetensors")))
    with pytest.raises(checkpoint.CheckpointError, match="is not a regular file inside"):
        checkpoint.load(folder / "best")


@pytest.mark.parametrize("tensors", ["../outside/best.0123abcd.safetensors", "/etc/passwd", "other.safetensors", 7])
def test_a_manifest_naming_a_foreign_tensor_file_is_refused(tmp_path, tensors):
    manifest = _small_checkpoint(tmp_path / "best")
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**meta, "tensors": tensors}))
    with pytest.raises(checkpoint.CheckpointError, match="should name this checkpoint's own tensor file"):
        checkpoint.load(tmp_path / "best")


def _finished_fit(tmp_path, epochs=2):
    x, y = _data()
    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=epochs, last=stem)
    return x, y, stem


def _tamper(stem, edit_meta=None, drop_tensors=None):
    tensors, meta = checkpoint.load(stem)
    if edit_meta:
        edit_meta(meta)
    tensors = {k: v for k, v in tensors.items() if not (drop_tensors and k.startswith(drop_tensors))}
    keep = {k: v for k, v in meta.items() if k not in ("format", "version", "tensors", "sha256")}
    checkpoint.save(stem, tensors, keep)


@pytest.mark.parametrize("tamper, message", [
    (dict(drop_tensors="optimizer."), "lacks the optimiser's moments after 8 steps"),
    (dict(drop_tensors="optimizer.0.exp_avg_sq"), "optimiser state of parameter 0 is incomplete"),
    (dict(edit_meta=lambda m: m.update(epoch=1000)), "do not describe a run of 3 epochs"),
    (dict(edit_meta=lambda m: m.update(history=[0.1])), "do not describe a run of 3 epochs"),
    (dict(edit_meta=lambda m: m["optimizer"]["param_groups"][0].update(weight_decay=0.5)),
     "hyper-parameters differ from the ones the configuration implies"),
    (dict(edit_meta=lambda m: m.update(optimizer="nope")), "the optimiser state is damaged"),
    (dict(edit_meta=lambda m: m.pop("optimizer")), "the optimiser state is damaged"),  # found by test_fuzz_files
])
def test_a_tampered_last_checkpoint_is_refused(tmp_path, tamper, message):
    x, y, stem = _finished_fit(tmp_path)
    _tamper(stem, **tamper)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=3, last=stem, resume=True)


def test_a_checkpoint_of_one_step_without_the_optimisers_moments_is_refused(tmp_path):
    """One step leaves AdamW its moments: a file without them would resume from fresh moments, another run."""
    x, y = _data()
    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=len(x)), epochs=1, last=stem)
    assert checkpoint.read_meta(stem)["step"] == 1
    _tamper(stem, drop_tensors="optimizer.")
    with pytest.raises(checkpoint.CheckpointError, match="lacks the optimiser's moments after 1 steps"):
        fit(_regression_model(), TensorBatches(x, y, batch_size=len(x)), epochs=2, last=stem, resume=True)


def test_nan_weights_are_refused_at_load(tmp_path):
    model = build_model(**ARGS)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "best", model, model_args=ARGS, epoch=1)
    with pytest.raises(checkpoint.CheckpointError, match="holds NaN or infinite values in .*refusing"):
        load_checkpoint(tmp_path / "best")


def test_a_failed_tensor_write_is_an_os_error_that_names_the_file(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def disk_full(tensors, path):
        raise SafetensorError("No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with pytest.raises(OSError, match=r"cannot write checkpoint .*best\.[0-9a-f]{8}\.safetensors: No space left"):
        checkpoint.save(tmp_path / "best", {"w": torch.ones(1)}, {})
    assert not list(tmp_path.iterdir())


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"folder {tmp_path / 'nope'} does not exist"):
        checkpoint.save(tmp_path / "nope" / "best", {"w": torch.ones(1)}, {})


def test_deeply_nested_json_is_a_checkpoint_error(tmp_path):
    manifest = _small_checkpoint(tmp_path / "best")
    manifest.write_text("[" * 100_000)
    with pytest.raises(checkpoint.CheckpointError, match="best.json is not a readable checkpoint manifest"):
        checkpoint.load(tmp_path / "best")


@pytest.mark.parametrize("edit, message", [
    ({"dictionary_size": 10**12}, "do not match the tensors it holds"),
    ({"num_classes": 10**9}, "do not match the tensors it holds"),
    ({"in_channels": 10**6}, "do not match the tensors it holds"),
    ({"method": ["mn"]}, "model_args should name a method"),
    ({"backbone": "vgg"}, "model_args should name a method"),
])
def test_model_args_are_checked_before_anything_is_built(tmp_path, edit, message):
    save_checkpoint(tmp_path / "best", build_model(**ARGS), model_args={**ARGS, **edit}, epoch=1)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        load_checkpoint(tmp_path / "best")


@pytest.mark.parametrize("keys", [torch.tensor(1.0), torch.ones(8)])
def test_keys_of_another_rank_are_refused_before_anything_is_built(tmp_path, keys):
    model = build_model(**ARGS)
    model.dictionary._parameters["keys"] = torch.nn.Parameter(keys)  # a crafted tensor file, its digest recomputed
    save_checkpoint(tmp_path / "best", model, model_args=ARGS, epoch=1)
    with pytest.raises(checkpoint.CheckpointError, match="do not match the tensors it holds"):
        load_checkpoint(tmp_path / "best")


@pytest.mark.parametrize("edit", [
    lambda tensors, meta: tensors.update({"optimizer.0.step": torch.tensor([1.0, 2.0, 3.0])}),
    lambda tensors, meta: tensors.update({"optimizer.0.step": torch.tensor(-1.0)}),
    lambda tensors, meta: tensors.update({"optimizer.0.exp_avg": tensors["optimizer.0.exp_avg"].double()}),
    lambda tensors, meta: meta["optimizer"]["state"].update({"0": {"extra": 1.0}}),
])
def test_a_damaged_optimiser_state_is_refused_naming_the_file(tmp_path, edit):
    """A crafted step gave torch's own message ('a Tensor with 3 elements cannot be converted to Scalar'), naming no
    file; float64 moments were taken as they were."""
    x, y = _data()
    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=1, last=stem, config={"epochs": 2})
    tensors, meta = checkpoint.load(stem)
    edit(tensors, meta)
    checkpoint.save(stem, tensors, {k: v for k, v in meta.items() if k not in ("format", "version", "tensors", "sha256")})
    with pytest.raises(checkpoint.CheckpointError, match="last.json: the optimiser state of parameter 0 is "):
        fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=2, last=stem, resume=True,
            config={"epochs": 2})


def test_infinite_weights_are_refused_as_nan_ones_are(tmp_path):
    """non_finite promises NaN or infinite: a network of +inf weights must not load (nor export)."""
    assert checkpoint.non_finite({"model.w": torch.tensor([1.0, float("inf")])}) == ["model.w"]
    from meta_neighborhoods.estimators import MetaNeighborhoodsRegressor

    X = np.random.default_rng(0).normal(size=(60, 4))
    model = MetaNeighborhoodsRegressor(hidden_layer_sizes=(16,), dictionary_size=8, max_epochs=3,
                                       vanilla_fallback=False, random_state=0).fit(X, X[:, 0])
    with torch.no_grad():
        next(model.model_.parameters()).view(-1)[0] = float("inf")
    model.save(tmp_path / "m")
    with pytest.raises(checkpoint.CheckpointError, match="NaN or infinite"):
        MetaNeighborhoodsRegressor.load(tmp_path / "m")


def test_a_manifest_of_another_format_version_is_refused(tmp_path):
    checkpoint.save(tmp_path / "c", {"x": torch.zeros(2)}, {"step": 1})
    meta = json.loads((tmp_path / "c.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**meta, "version": checkpoint.VERSION + 1}))
    with pytest.raises(checkpoint.CheckpointError, match="format version"):
        checkpoint.load(tmp_path / "c")


def test_save_keeps_a_user_s_file_that_only_starts_like_a_tensor_file(tmp_path):
    backup = tmp_path / "c.0123abcd.safetensors.bak"
    backup.write_text("mine")
    checkpoint.save(tmp_path / "c", {"x": torch.zeros(1)}, {})
    checkpoint.save(tmp_path / "c", {"x": torch.ones(1)}, {})  # removes its own earlier tensor file, not this
    assert backup.read_text() == "mine"


@pytest.mark.parametrize("reshape", [lambda t: t.reshape(-1), lambda t: t.reshape(-1)[:1],
                                     lambda t: torch.cat([t, t])])
def test_optimiser_moments_of_another_shape_are_refused_naming_the_file(tmp_path, reshape):
    """A moment of another shape than its parameter: torch would take it, then fail at the first step with its own
    broadcasting message naming no file (or broadcast it without a word)."""
    x, y = _data()
    stem = tmp_path / "last"
    fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=1, last=stem, config={"epochs": 2})
    tensors, meta = checkpoint.load(stem)
    moment = tensors["optimizer.0.exp_avg"]
    assert moment.dim() >= 1
    tensors["optimizer.0.exp_avg"] = reshape(moment).contiguous()
    assert tensors["optimizer.0.exp_avg"].shape != moment.shape
    kept = {k: v for k, v in meta.items() if k not in ("format", "version", "tensors", "sha256")}
    checkpoint.save(stem, tensors, kept)
    with pytest.raises(checkpoint.CheckpointError, match="last.json: the optimiser state of parameter 0 is "):
        fit(_regression_model(), TensorBatches(x, y, batch_size=16), epochs=2, last=stem, resume=True,
            config={"epochs": 2})


def test_a_manifest_load_would_refuse_is_never_written(tmp_path):
    """A review saved a classifier of 4,000 classes of 9,000 characters: load refused its 34 MiB manifest as
    'corrupt or truncated'. save refuses it first, writing nothing; load says what is wrong with such a file."""
    with pytest.raises(ValueError, match="would exceed the 32 MiB a checkpoint's manifest may hold"):
        checkpoint.save(tmp_path / "m", {"w": torch.zeros(1)}, {"names": ["x" * 1000] * 40_000})
    assert not any(tmp_path.iterdir())
    checkpoint.save(tmp_path / "m", {"w": torch.zeros(1)}, {"names": ["x"]})
    (tmp_path / "m.json").write_text(" " * (checkpoint.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(checkpoint.CheckpointError, match=r"m\.json is larger than 32 MiB, far more than any checkpoint "
                                                          "manifest this package writes$"):
        checkpoint.load(tmp_path / "m")
