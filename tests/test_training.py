"""The training loop's optimiser (``training.OptimizerSpec``): torch's fused AdamW kernel, which must take the same
steps as the reference AdamW over the model's weight-decay groups."""

import torch

from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.training import OptimizerSpec, clip_gradients


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
    groups = reference.parameter_groups(spec.weight_decay)
    expected = _steps(reference, torch.optim.AdamW(groups, lr=spec.learning_rate, foreach=False))
    got = _steps(fused, optimizer)
    initial = model().state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-10, atol=1e-12, msg=name)
        assert not torch.equal(value, initial[name]), f"{name} did not move"
