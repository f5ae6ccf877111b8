"""The choice of keys at evaluation (``similarity.settled``): a rule that no other row of the batch can change."""

import pytest
import torch

from meta_neighborhoods import model as model_module
from meta_neighborhoods.heads import MLPHead
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.similarity import KINDS, reach, settled


def _rule(z: torch.Tensor, keys: torch.Tensor, kind: str, k: int, temperature: torch.Tensor) -> torch.Tensor:
    """``settled``'s rule over every row: float64 similarities (each pair's own, as ``_ranked_again`` takes them)
    rounded to float32, the lower index first on ties; a stable sort, which ``_lower_first`` replaces."""
    pairs = KINDS[kind].pair(z.double(), keys.double().expand(len(z), *keys.shape))
    return (pairs / temperature.double()).float().sort(dim=1, descending=True, stable=True).indices[:, :k]


def _grid(rows: int, generator: torch.Generator) -> torch.Tensor:
    """Points of a coarse grid, steps of 0.37 (not exact in binary): many keys at equal distances from a row."""
    return torch.randint(0, 3, (rows, 4), generator=generator) * 0.37


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("data", ["grid", "random"])
def test_the_choice_follows_the_rule_ranking_few_rows_again(kind, dtype, data):
    generator = torch.Generator().manual_seed(0)
    draw = _grid if data == "grid" else lambda n, g: torch.randn(n, 4, generator=g)
    z, keys, temperature = draw(300, generator).to(dtype), draw(60, generator).to(dtype), torch.tensor(0.7, dtype=dtype)
    scores = KINDS[kind].full(z, keys) / temperature
    chosen = settled(scores, z, keys, kind, 9, temperature)
    assert torch.equal(chosen.sort(1).values, _rule(z, keys, kind, 9, temperature).sort(1).values)
    best = scores.topk(10, dim=1).values
    again = (best[:, -1:] >= best[:, -2:-1] - reach(best[:, -2:-1], z, keys, kind, temperature)).float().mean()
    assert again > 0.5 if data == "grid" else again < 0.05  # ties ranked again; otherwise the float32 choice


def test_the_plain_float32_choice_breaks_the_rule_on_ties():
    """What the test above guards: the top-k of float32 scores picks among tied keys as its kernel goes."""
    generator = torch.Generator().manual_seed(0)
    z, keys, temperature = _grid(300, generator), _grid(60, generator), torch.tensor(0.7)
    scores = KINDS["euclidean"].full(z, keys) / temperature
    plain = scores.topk(9, dim=1, sorted=False).indices.sort(1).values
    assert not torch.equal(plain, _rule(z, keys, "euclidean", 9, temperature).sort(1).values)


@pytest.mark.parametrize("dense_below", [0, 64])  # every path: gathered, and dense over every key
@pytest.mark.parametrize("similarity", sorted(KINDS))
def test_a_row_alone_and_in_any_batch_attends_to_the_same_keys_among_ties(similarity, dense_below, monkeypatch):
    """Keys at the training rows of a grid, many at equal distances: a row's answer must not follow its batch
    (float32; the estimators' predictions had differed by up to 0.018, relative, on a table of such rows)."""
    monkeypatch.setattr(model_module, "DENSE_BELOW", dense_below)
    generator = torch.Generator().manual_seed(1)
    x = _grid(120, generator)
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=60, top_k=8, similarity=similarity,
                              step_size_init=0.5)
    model.dictionary.init_from_samples(x, torch.randn(120, 1, generator=generator))
    with torch.no_grad():
        whole = model.eval()(x)
        for size in (1, 7, 13):
            parts = torch.cat([model(x[start:start + size]) for start in range(0, len(x), size)])
            torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)


@pytest.fixture
def bf16_matmuls():
    """torch's newer per-backend precision setting, under which the older query raises."""
    before = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    yield
    torch.backends.mkldnn.matmul.fp32_precision = before


def test_the_rounding_bound_follows_torchs_newer_precision_settings(bf16_matmuls):
    """Evaluation had raised there (torch.get_float32_matmul_precision refuses to answer once they are set)."""
    z, keys = torch.randn(5, 4), torch.randn(9, 4)
    kth = torch.full((5, 1), -3.0)
    wide = reach(kth, z, keys, "euclidean", torch.tensor(1.0))
    torch.backends.mkldnn.matmul.fp32_precision = "ieee"
    assert (wide > 2**15 * reach(kth, z, keys, "euclidean", torch.tensor(1.0))).all()  # bfloat16 against float32


def test_gradients_of_rows_under_vmap_take_the_float32_choice():
    """``vmap(grad(...))`` wraps the scores twice: the rule's data-dependent shapes had failed under it."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=60, top_k=8).eval()
    x = torch.randn(5, 4)
    per_row = torch.func.vmap(torch.func.grad(lambda row: model(row[None]).sum()))(x)
    loop = torch.stack([torch.autograd.grad(model(row[None]).sum(), row)[0] for row in x.clone().requires_grad_()])
    torch.testing.assert_close(per_row, loop)


def test_a_whole_graph_compiles_at_evaluation_with_the_float32_choice():
    """``torch.compile(fullgraph=True)`` had failed on the rule's checks and data-dependent shapes; a compiled graph
    takes the float32 choice, as an exported one does (the same keys where none tie)."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(4, (8,), 1), dictionary_size=60, top_k=8).eval()
    x = torch.randn(20, 4)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x))
