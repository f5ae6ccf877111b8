"""The training loop's optimiser (``training_state.OptimizerSpec``): torch's fused AdamW kernel, which must take the
same steps as the reference AdamW over the model's weight-decay groups, on gradients clipped first; the moving average
of the weights that early stopping can validate and keep; the state carried from one call of fit to the next."""

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from meta_neighborhoods.datasets.batches import TensorBatches
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.callbacks import Callback
from meta_neighborhoods.training import EarlyStopped, OptimizerSpec, clip_gradients, fit, fit_early_stopping
from meta_neighborhoods.training_state import Carried
from meta_neighborhoods.validation import ConfigError


def _steps(model: MetaNeighborhoods, optimizer, steps: int = 5) -> dict:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 4, generator=generator, dtype=torch.float64), torch.randn(16, 1, generator=generator, dtype=torch.float64)
        loss = model.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model, 0.5)
        optimizer.step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_the_fused_adamw_steps_as_the_reference_adamw():
    def model():
        torch.manual_seed(0)
        return MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=6).double()

    spec = OptimizerSpec(learning_rate=0.05, weight_decay=0.1)
    fused = model()
    optimizer, _ = spec.build(fused)
    assert optimizer.defaults["fused"]
    reference = model()
    groups = reference.parameter_groups(spec.weight_decay, spec.learning_rate)
    expected = _steps(reference, torch.optim.AdamW(groups, lr=spec.learning_rate, foreach=False))
    got = _steps(fused, optimizer)
    initial = model().state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-10, atol=1e-12, msg=name)
        assert not torch.equal(value, initial[name]), f"{name} did not move"


def test_the_keys_step_at_key_lr_scale_times_the_learning_rate():
    def model(scale):
        torch.manual_seed(0)
        return MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=6, key_lr_scale=scale).double()

    spec, initial = OptimizerSpec(learning_rate=0.05, weight_decay=0.1), model(1.0).state_dict()
    plain, slow = model(1.0), model(0.1)
    optimizer, _ = spec.build(slow)
    assert [group["lr"] for group in optimizer.param_groups] == [0.05, 0.05, 0.05 * 0.1]
    assert optimizer.param_groups[-1]["params"] == [slow.dictionary.keys]
    own = model(0.1)  # one's own optimiser over the groups, as the README's training loop: the same rates
    rates = [group["lr"] for group in torch.optim.AdamW(own.parameter_groups(0.1, 0.05)).param_groups]
    assert rates == [0.05, 0.05, 0.05 * 0.1]
    plain_after, slow_after = _steps(plain, spec.build(plain)[0], steps=1), _steps(slow, optimizer, steps=1)
    for name, value in plain_after.items():  # one AdamW step: the same gradients, so moves in proportion
        scale = 0.1 if name == "dictionary.keys" else 1.0
        torch.testing.assert_close(slow_after[name] - initial[name], scale * (value - initial[name]), msg=name)
        assert not torch.equal(value, initial[name]), f"{name} did not move"


def test_fit_clips_every_gradient_entry_before_each_step():
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(3, (8,), 1), dictionary_size=6)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, generator=generator), 100 * torch.randn(64, 1, generator=generator)  # large gradients
    largest = []  # the largest gradient entry the optimiser sees at each step
    hook = register_optimizer_step_pre_hook(lambda optimizer, args, kwargs: largest.append(max(
        p.grad.abs().max().item() for group in optimizer.param_groups for p in group["params"] if p.grad is not None)))
    try:
        fit(model, TensorBatches(x, y, batch_size=16), epochs=1, optimizer=OptimizerSpec(1e-2, grad_clip=0.01))
    finally:
        hook.remove()
    assert largest == pytest.approx([0.01] * 4)  # every step clipped, and each needed it


class _RawWeights(Callback):
    """The parameters after every optimiser step, as the optimiser left them."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def on_step(self, step: int) -> None:
        self.seen.append({name: p.detach().clone() for name, p in self.model.named_parameters()})


def test_early_stopping_validates_and_keeps_the_moving_average_of_the_weights():
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=6).double()
    names = [name for name, _ in model.named_parameters()]
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(16, 4, generator=generator, dtype=torch.float64),
                torch.randn(16, 1, generator=generator, dtype=torch.float64)) for _ in range(3)]
    validated, losses = [], iter([3.0, 1.0, 2.0, 2.5, 2.7])  # epoch 2 is the best, then patience runs out
    raw, decay = _RawWeights(model), 0.9

    def validation_loss() -> float:
        validated.append({name: p.detach().clone() for name, p in model.named_parameters()})
        return next(losses)

    run = fit_early_stopping(model, batches, epochs=10, patience=3, validation_loss=validation_loss, average=decay,
                             optimizer=OptimizerSpec(learning_rate=0.05), callbacks={"raw": raw})
    assert run.best_epoch == 2 and len(raw.seen) == 5 * len(batches)
    averages = []
    for t in range(1, len(raw.seen) + 1):  # exponential weights on the steps so far, summing to one: not on the start
        weights = [(1 - decay) * decay ** (t - s) / (1 - decay ** t) for s in range(1, t + 1)]
        averages.append({name: sum(w * step[name] for w, step in zip(weights, raw.seen)) for name in names})
    for epoch, weights in enumerate(validated):  # validation saw each epoch's average, not its last step
        for name, value in weights.items():
            torch.testing.assert_close(value, averages[len(batches) * (epoch + 1) - 1][name], rtol=1e-12, atol=1e-12)
            assert not torch.allclose(value, raw.seen[len(batches) * (epoch + 1) - 1][name])
    for name, p in model.named_parameters():  # and the model ends with the best epoch's average
        torch.testing.assert_close(p.detach(), validated[1][name], rtol=0, atol=0)


def test_an_epoch_s_loss_weighs_each_batch_by_its_total_weight():
    """loss_curve_ with sample_weight and mini-batches: the weighted mean over all the epoch's rows (what early
    stopping without validation rows keeps the best epoch by), not a mean of the batches' means."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(3, (4,), 1), dictionary_size=0).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    w = torch.tensor([1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0], dtype=torch.float64)
    with torch.no_grad():
        expected = model.loss(model(x), y, w).item()
    losses = fit(model, [(x[:4], y[:4], w[:4]), (x[4:], y[4:], w[4:])], epochs=1,
                 optimizer=OptimizerSpec(learning_rate=0.0))
    assert losses[0] == pytest.approx(expected, rel=1e-12)


def test_every_epoch_trains_in_training_mode_after_its_validation():
    """Validation runs in evaluation mode (every slot, no leave-one-out); the next epoch must train again with slot
    dropout, which only training mode draws."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=6, slot_dropout=0.5).double()
    batches = [(torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)) for _ in range(2)]
    modes, loss = [], model.loss
    model.loss = lambda *args: modes.append(model.training) or loss(*args)

    def validation_loss() -> float:
        model.eval()
        return float(len(modes))  # never better: patience runs out

    fit_early_stopping(model, batches, epochs=5, patience=2, validation_loss=validation_loss)
    assert len(modes) == 3 * len(batches) and all(modes)


def test_tensor_batches_come_in_a_new_order_every_epoch_which_the_seed_replays():
    x = torch.arange(40)

    def epochs(seed):
        batches = TensorBatches(x, batch_size=8, seed=seed)
        return [torch.cat([b[0] for b in batches]).tolist() for _ in range(3)]

    first = epochs(0)
    assert first == epochs(0) and first[0] != epochs(1)[0]
    assert first[0] != first[1] != first[2] and sorted(first[1]) == list(range(40))  # each epoch every row once


def test_a_loss_that_diverges_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path):
    """Past the first epoch the last good checkpoint is named; within it there is none, and the message says so
    rather than leave a reader to expect one."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(3, (8,), 1), dictionary_size=6)
    x, y = torch.randn(32, 3), torch.randn(32, 1)

    class Poison(Callback):
        def on_step(self, step):
            with torch.no_grad():
                model.head.layers[0].weight.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match=r"became nan at epoch 1, step 2: training stopped; no epoch had "
                                                 r"finished, so it wrote no checkpoint \(a lower learning rate may "
                                                 r"help\)$"):
        fit(model, TensorBatches(x, y, batch_size=16), epochs=2, last=tmp_path / "last", callbacks={"p": Poison()})
    assert not any(tmp_path.iterdir())
    with pytest.raises(FloatingPointError, match=r"became nan at epoch 1, step 1: training stopped \(a lower "):
        fit(model, TensorBatches(x, y, batch_size=16), epochs=2)  # no checkpoint asked for: nothing said of one


def test_a_run_followed_by_a_warm_one_counts_the_epochs_of_both():
    """The second phase (``refine_factor``) starts from the first's kept weights, its epoch 0: kept, the best epoch
    stays the first phase's; beaten, it is counted on from the first phase's last epoch."""
    first = EarlyStopped([3.0, 2.0, 2.5], [1.0, 0.5, 0.6], 2, 0.5)
    kept = first.followed_by(EarlyStopped([2.4, 2.3], [0.55, 0.52], 0, 0.5))
    assert kept == EarlyStopped([3.0, 2.0, 2.5, 2.4, 2.3], [1.0, 0.5, 0.6, 0.55, 0.52], 2, 0.5)
    assert first.followed_by(EarlyStopped([2.4, 2.3], [0.45, 0.47], 1, 0.45)).best_epoch == 4


def test_calls_of_fit_that_carry_their_state_train_as_one_run_in_float64():
    """Two calls of one epoch carrying ``Carried`` are one run of two epochs, weight average included; a schedule of
    milestones, whose epoch the state does not carry, is refused."""
    def model():
        torch.manual_seed(0)
        return MetaNeighborhoods(MLPHead(3, (8,), 1), dictionary_size=6).double()

    x, y = torch.randn(40, 3, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)
    whole = model()
    fit_early_stopping(whole, TensorBatches(x, y, batch_size=16, seed=3), epochs=2, patience=5, average=0.9)
    calls, carried = model(), Carried()
    for _ in range(2):
        carried = Carried(carried.after)
        fit_early_stopping(calls, TensorBatches(x, y, batch_size=16, seed=3), epochs=1, patience=5, average=0.9,
                           carried=carried)
    for (name, p), q in zip(whole.named_parameters(), calls.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)
    with pytest.raises(ConfigError, match="cannot be used with milestones"):
        fit(model(), TensorBatches(x, y, batch_size=16), epochs=1, optimizer=OptimizerSpec(milestones=(1,)),
            carried=Carried())
