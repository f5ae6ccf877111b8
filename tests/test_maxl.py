"""MAXL, the baseline of Table 1: the generator's meta-gradient against an independent torch.func reference, the
masked softmax and the entropy term, a classify run that trains both networks reproducibly, torchrun, export and the
options that are refused."""

import copy
import json
import math
import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from meta_neighborhoods import checkpoint
from meta_neighborhoods.cli import main
from meta_neighborhoods.datasets.batches import ImageBatches
from meta_neighborhoods.datasets.images import ImageSplit
from meta_neighborhoods.experiments.analysis import run_analysis
from meta_neighborhoods.experiments.classification import run_classification
from meta_neighborhoods.maxl import ENTROPY_WEIGHT, STEP_SIZE, MetaAuxiliaryLearning, label_entropy, auxiliary_labels
from meta_neighborhoods.export import export_run
from meta_neighborhoods.image_methods import build_model, load_checkpoint, save_checkpoint
from meta_neighborhoods.runs import load_best_model
from meta_neighborhoods.training import OptimizerSpec, fit

from gloo_processes import train_in_processes

CLASSES, PSI, INPUTS, BATCH = 3, 2, 6, 12


class Tiny(nn.Sequential):
    """A smooth extractor without BatchNorm (tanh: the finite difference needs curvature that is smooth)."""

    def __init__(self, inputs: int = INPUTS, width: int = 5):
        super().__init__(nn.Flatten(), nn.Linear(inputs, width), nn.Tanh())
        self.out_features = width


def _tiny(first_order: bool = False, inputs: int = INPUTS) -> MetaAuxiliaryLearning:
    torch.manual_seed(0)
    return MetaAuxiliaryLearning(Tiny(inputs), Tiny(inputs), CLASSES, PSI, first_order=first_order).double()


def _batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, INPUTS, generator=generator, dtype=torch.float64), torch.arange(BATCH) % CLASSES


# ---------------------------------------------------------------------------------------------------
# The reference: both networks written out by hand, differentiated by torch.func


def _cosine(z, weight, scale):
    return scale * F.normalize(z, dim=1) @ F.normalize(weight, dim=0)


def _multitask(theta, x):
    z = torch.tanh(F.linear(x, theta["extractor.1.weight"], theta["extractor.1.bias"]))
    return (_cosine(z, theta["head.weight"], theta["head.scale"]),
            _cosine(z, theta["auxiliary.weight"], theta["auxiliary.scale"]))


def _labels(phi, x, y):
    """Each image's softmax over its class's block of psi logits, placed into that block."""
    h = torch.tanh(F.linear(x, phi["extractor.1.weight"], phi["extractor.1.bias"]))
    hidden = torch.relu(F.linear(h, phi["classifier.0.weight"], phi["classifier.0.bias"]))
    logits = F.linear(hidden, phi["classifier.2.weight"], phi["classifier.2.bias"])
    own = logits.reshape(len(y), CLASSES, PSI)[torch.arange(len(y)), y].softmax(dim=1)
    return (F.one_hot(y, CLASSES)[:, :, None] * own[:, None, :]).reshape(len(y), -1)


def _multitask_loss(theta, x, y, labels):
    primary, auxiliary = _multitask(theta, x)
    return F.cross_entropy(primary, y) - (labels * auxiliary.log_softmax(dim=1)).sum(dim=1).mean()


def _reference(model, x, y):
    """(gradient of the multi-task network, of the generator): torch.func.grad of the multi-task loss with the
    labels fixed, and of the primary loss after one virtual SGD step minus the weighted entropy of the mean label."""
    theta = {name: p.detach() for name, p in model.named_parameters() if not name.startswith("generator.")}
    phi = {name: p.detach() for name, p in model.generator.named_parameters()}

    def objective(phi):
        labels = _labels(phi, x, y)
        gradient = torch.func.grad(_multitask_loss)(theta, x, y, labels)
        primary, _ = _multitask({name: t - STEP_SIZE * gradient[name] for name, t in theta.items()}, x)
        mean = labels.mean(dim=0)
        return F.cross_entropy(primary, y) + ENTROPY_WEIGHT * (mean * mean.log()).sum()

    return torch.func.grad(_multitask_loss)(theta, x, y, _labels(phi, x, y)), torch.func.grad(objective)(phi)


def _gradients(model, x, y):
    """What one training step's backward leaves in .grad, by network."""
    model.train()
    model.zero_grad()
    model.loss(model(x), y).backward()
    own = {name: p.grad for name, p in model.named_parameters() if not name.startswith("generator.")}
    return own, {name: p.grad for name, p in model.generator.named_parameters()}


def _merged(multitask, generator):
    """Both networks' gradients in one dict: the generator's names (extractor.1.weight, ...) are the multi-task
    network's too, so they are keyed apart or the generator's would silently replace the main network's."""
    return {**multitask, **{f"generator.{name}": gradient for name, gradient in generator.items()}}


def test_one_backward_gives_each_network_its_own_gradient_second_order_exactly():
    model, (x, y) = _tiny(), _batch()
    multitask, generator = _gradients(model, x, y)
    actual, expected = _merged(multitask, generator), _merged(*_reference(model, x, y))
    assert len(actual) == len(multitask) + len(generator) and actual.keys() == expected.keys()
    for name, gradient in actual.items():
        assert gradient.abs().sum() > 0, name
        torch.testing.assert_close(gradient, expected[name], rtol=1e-10, atol=1e-12, msg=name)


def test_the_first_order_finite_difference_approximates_the_meta_gradient():
    model, (x, y) = _tiny(first_order=True), _batch()
    _, generator = _gradients(model, x, y)
    _, expected = _reference(model, x, y)
    for name, gradient in generator.items():  # the central difference is exact up to O(eps^2)
        assert (gradient - expected[name]).norm() < 1e-3 * expected[name].norm(), name


def test_the_loss_is_worth_the_multitask_loss_and_needs_the_training_forward():
    model, (x, y) = _tiny(), _batch()
    model.train()
    value = model.loss(model(x), y)
    labels = _labels(dict(model.generator.named_parameters()), x, y)
    expected = _multitask_loss({name: p for name, p in model.named_parameters()}, x, y, labels)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    with pytest.raises(RuntimeError, match="needs the training-mode forward"):  # the first call took the batch
        model.loss(value.new_zeros(BATCH, CLASSES), y)
    with pytest.raises(RuntimeError, match="needs the training-mode forward"):
        model.loss(model.eval()(x), y)


def test_a_module_holding_a_batch_for_its_loss_copies_and_pickles_as_its_weights():
    """A training-mode forward not followed by ``loss`` (a probe, a snapshot for a moving average) held its batch and
    graph on the module, and copy.deepcopy failed on it; the copy holds no batch, the original still does."""
    model, (x, y) = _tiny(), _batch()
    model.train()(x)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert copied._held.batch is None
        torch.testing.assert_close(copied.state_dict(), model.state_dict())
    model.loss(model(x), y)  # the original's forward and loss go on as before
    assert "psi=" in repr(model) and "vanilla" not in repr(model)


def test_row_weights_are_refused_by_name():
    model, (x, y) = _tiny(), _batch()
    with pytest.raises(ValueError, match="MetaAuxiliaryLearning takes no row weights"):
        model.loss(model.train()(x), y, torch.ones(len(y)))


def test_the_virtual_steps_leave_the_batchnorm_statistics_to_the_real_forward():
    torch.manual_seed(0)
    model = build_model("maxl", "convnet4", 1, 4, psi=2).train()
    plain = copy.deepcopy(model)
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 4
    model.loss(model(x), y)
    plain(x)
    for (name, buffer), (_, expected) in zip(model.extractor.named_buffers(), plain.extractor.named_buffers()):
        assert torch.equal(buffer, expected), name


# ---------------------------------------------------------------------------------------------------
# Masked softmax and entropy


def test_the_auxiliary_labels_puts_all_mass_on_the_true_classs_sub_classes():
    logits, target = torch.randn(20, 4 * 3, dtype=torch.float64), torch.randint(0, 4, (20,))
    labels = auxiliary_labels(logits, target, 3)
    blocks = labels.reshape(20, 4, 3)
    outside = torch.ones(20, 4, dtype=torch.bool)
    outside[torch.arange(20), target] = False
    assert torch.all(blocks[outside] == 0)
    own = logits.reshape(20, 4, 3)[torch.arange(20), target]
    torch.testing.assert_close(blocks[torch.arange(20), target], own.softmax(dim=1))


def test_the_entropy_term_is_largest_for_uniform_labels():
    target = torch.arange(24) % 4  # every class equally often
    uniform = auxiliary_labels(torch.zeros(24, 12, dtype=torch.float64), target, 3)
    assert label_entropy(uniform).item() == pytest.approx(math.log(12), abs=1e-12)
    for seed in range(20):
        logits = torch.randn(24, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        assert label_entropy(auxiliary_labels(logits, target, 3)) < label_entropy(uniform)
    logits = torch.zeros(24, 12, dtype=torch.float64, requires_grad=True)  # uniform is a stationary point
    (gradient,) = torch.autograd.grad(label_entropy(auxiliary_labels(logits, target, 3)), logits)
    assert gradient.abs().max() < 1e-12


def test_the_entropy_of_a_batch_missing_classes_has_a_finite_gradient():
    logits = torch.randn(6, 12, requires_grad=True)
    label_entropy(auxiliary_labels(logits, torch.zeros(6, dtype=torch.long), 3)).backward()
    assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------------------------------------
# classify --method maxl


def _classify(out, *options):
    argv = ["classify", "--dataset", "digits", "--backbone", "convnet4", "--method", "maxl", "--epochs", "2",
            "--batch-size", "32", "--train-subset", "320", "--device", "cpu", "--quiet", "--out", str(out), *options]
    return main(argv)


@pytest.fixture(scope="module")
def maxl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("maxl") / "run"
    assert _classify(out, "--psi", "3") == 0
    return out


def test_a_run_trains_every_parameter_of_both_networks_and_records_psi(maxl_run):
    config = json.loads((maxl_run / "config.json").read_text())
    assert config["psi"] == 3 and config["model"] == {"method": "maxl", "backbone": "convnet4", "in_channels": 1,
                                                      "num_classes": 10, "dictionary_size": 0, "psi": 3}
    assert config["maxl"] == {"meta_gradient": "second order", "lookahead_step_size": STEP_SIZE,
                              "entropy_weight": ENTROPY_WEIGHT, "generator_lr_scale": 0.1}
    torch.manual_seed(config["seed"])  # the run's initial weights, as classify draws them
    initial = build_model(**config["model"])
    trained = checkpoint.network_of(checkpoint.load(maxl_run / "last")[0])
    assert trained.keys() == initial.state_dict().keys()
    names = [name for name, _ in initial.named_parameters()]
    assert any(name.startswith("generator.") for name in names) and any(name.startswith("auxiliary.") for name in names)
    unchanged = [name for name, p in initial.named_parameters() if torch.equal(trained[name], p.detach())]
    assert not unchanged


def test_a_run_is_reproducible_with_its_seed(maxl_run, tmp_path):
    again = run_classification("digits", "convnet4", "maxl", tmp_path / "again", epochs=2, batch_size=32,
                               train_subset=320, device="cpu", progress=False, psi=3)
    expected = json.loads((maxl_run / "metrics.json").read_text())
    assert (again["test_accuracy"], again["history"]) == (expected["test_accuracy"], expected["history"])
    for stem in ("last", "best"):
        tensors, reference = (checkpoint.load(run / stem)[0] for run in (tmp_path / "again", maxl_run))
        assert all(torch.equal(tensors[name], reference[name]) for name in reference), stem


def test_the_export_is_the_primary_network_and_analyze_is_refused(maxl_run, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path, difference = export_run(maxl_run, tmp_path / "maxl.onnx")
    assert difference < 1e-4
    model = load_best_model(maxl_run)[0]
    primary = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] in ("extractor", "head"))
    exported = sum(math.prod(tensor.dims) for tensor in onnx.load(path).graph.initializer)
    assert abs(exported - primary) < 0.01 * primary  # not the generator nor the auxiliary head, as large again
    assert main(["analyze", "--run", str(maxl_run), "--what", "all", "--quiet"]) == 1
    assert "'maxl' run: it has no dictionary of learned neighbours" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no dictionary"):
        run_analysis(maxl_run, "tsne")


@pytest.mark.parametrize("options, message", [
    (["--psi", "1"], "psi (--psi, MAXL's auxiliary classes per class) must be an integer >= 2, got 1"),
    (["--psi", "3", "--method", "vanilla"], "--psi (psi, MAXL's auxiliary classes per class) applies to --method "
                                            "maxl or all, not 'vanilla'"),
])
def test_bad_psi_is_refused_before_any_work(capsys, user_folder, options, message):
    assert _classify(out := user_folder("run"), *options) == 2
    assert message in capsys.readouterr().err
    assert not any(out.iterdir())


def test_resume_refuses_psi_and_a_checkpoint_refuses_a_psi_its_tensors_do_not_have(maxl_run, tmp_path, capsys):
    assert main(["classify", "--resume", str(maxl_run), "--psi", "4"]) == 2
    assert "drop --psi" in capsys.readouterr().err
    args = json.loads((maxl_run / "config.json").read_text())["model"]
    for psi in (4, 10**9, 1):
        save_checkpoint(tmp_path / "best", build_model(**args), model_args={**args, "psi": psi}, epoch=1)
        with pytest.raises(checkpoint.CheckpointError, match="model_args"):
            load_checkpoint(tmp_path / "best")


# ---------------------------------------------------------------------------------------------------
# torchrun: two processes equal one with the same global batch (gloo, no BatchNorm)


def _train_tiny(shard: tuple[int, int]) -> MetaAuxiliaryLearning:
    model = _tiny(inputs=64).float()
    rng = np.random.default_rng(0)
    split = ImageSplit(rng.integers(0, 256, (48, 1, 8, 8), dtype=np.uint8), rng.integers(0, CLASSES, 48))
    fit(model, ImageBatches(split, (0.5,), (0.25,), batch_size=12, shuffle=True, seed=3, shard=shard), epochs=2,
        optimizer=OptimizerSpec(1e-2))
    return model


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo in this torch build")
def test_two_processes_train_both_networks_as_one(tmp_path):
    runs = {world_size: train_in_processes(_train_tiny, world_size, tmp_path) for world_size in (2, 1)}
    initial = _tiny(inputs=64).float().state_dict()
    for name, value in runs[1].items():
        torch.testing.assert_close(runs[2][name], value, rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.equal(value, initial[name]), f"{name} did not train"


def test_the_generator_learns_at_a_tenth_of_the_learning_rate_as_in_maxl():
    model = _tiny()
    optimizer, _ = OptimizerSpec(learning_rate=0.02, weight_decay=0.1).build(model)
    rates = {id(p): (group["lr"], group["weight_decay"]) for group in optimizer.param_groups for p in group["params"]}
    assert len(rates) == len(list(model.parameters()))  # every parameter in exactly one group
    for name, p in model.named_parameters():
        assert rates[id(p)][0] == pytest.approx(0.002 if name.startswith("generator.") else 0.02), name
    assert all("lr_scale" not in group for group in optimizer.param_groups)


def test_maxl_needs_two_auxiliary_classes_per_class():
    """With one, the auxiliary task is the primary task again: a degenerate baseline."""
    from meta_neighborhoods.image_methods import build_model
    from meta_neighborhoods.validation import ConfigError

    build_model("maxl", "convnet4", 1, 4, psi=2)
    with pytest.raises(ConfigError, match="psi"):
        build_model("maxl", "convnet4", 1, 4, psi=1)


def test_the_virtual_step_is_as_long_as_the_step_size_given():
    """step_size=0 takes no virtual step: the primary loss after it does not depend on the labels, and the
    generator's gradient is the entropy term's alone (at the default 0.01 the meta-gradient adds to it)."""
    x, y = _batch()
    torch.manual_seed(0)
    model = MetaAuxiliaryLearning(Tiny(), Tiny(), CLASSES, PSI, step_size=0.0).double().train()
    labels = model.generator(x, y)
    phi = list(model.generator.parameters())
    got = torch.autograd.grad(model.generator_objective(x, y, labels), phi, retain_graph=True)
    expected = torch.autograd.grad(-ENTROPY_WEIGHT * label_entropy(labels), phi)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)
