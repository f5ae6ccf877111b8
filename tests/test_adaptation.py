"""Every fast adaptation path against the generic torch.func oracle, in float64, with gradients."""

import contextlib
import copy
import itertools

import pytest
import torch
from torch import nn
from torch.func import vmap

from meta_neighborhoods import adaptation as adaptation_module
from meta_neighborhoods.adaptation import Adaptation
from meta_neighborhoods.config import MNConfig
from meta_neighborhoods.config import SIMILARITIES, default_temperature
from meta_neighborhoods.dictionary import InducedDictionary
from meta_neighborhoods.heads import CosineHead, LinearHead, MLPHead, PeriodicMLPHead, fast_path_for, takes_top_k
from meta_neighborhoods.inner_loss import TopK
from meta_neighborhoods import model as model_module
from meta_neighborhoods.model import MetaNeighborhoods
from meta_neighborhoods.similarity import (
    KINDS, Attention, first_visible, kind_of, n_candidates, nearest, nearest_visible,
)
from meta_neighborhoods.similarity import similarity as pairwise_similarity

HEADS = {
    "linear": lambda: LinearHead(4, 3),
    "mlp": lambda: MLPHead(4, (6, 5), 3),
    "cosine": lambda: CosineHead(4, 3),
    "periodic": lambda: PeriodicMLPHead(4, 3, hidden=(5,), frequencies=3, sigma=0.3, embedding=2),
}
CLASSIFIERS_ONLY = {"cosine"}  # heads whose outputs are logits on a fixed scale, never a regression's targets
LAST_ONLY = {"periodic"}  # heads whose fast path is their declared last layer's (last_layer_path), adapted alone
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # CUDA too where there is one
CASES = [
    (head, task, adapt)
    for head, task, adapt in itertools.product(HEADS, ("regression", "classification"), ("all", "last"))
    if not (head in CLASSIFIERS_ONLY and task == "regression") and not (head in LAST_ONLY and adapt == "all")
]


def _build(head, task, adapt, device="cpu", **options):
    torch.manual_seed(0)
    model = MetaNeighborhoods(
        HEADS[head](), task=task, dictionary_size=7, adapt=adapt, learn_temperature=True, learn_metric=True,
        extractor=nn.Linear(5, 4), **options,
    ).double().to(device)
    with torch.no_grad():  # values away from their initial symmetric spread, step size large enough to matter
        model.adaptation.step_size.alpha.requires_grad_(True)
        for a in model.adaptation.step_size.parameters():
            a.uniform_(0.2, 0.6)
        model.attention.log_scale.uniform_(-0.5, 0.5)  # features weighed unequally
    x = torch.randn(6, 5, dtype=torch.float64)
    y = torch.randn(6, 3, dtype=torch.float64) if task == "regression" else torch.randint(0, 3, (6,))
    return model, x.to(device), y.to(device)


@contextlib.contextmanager
def _fast_only(gathered: bool = False):
    """A fast path under test must answer itself: the oracle, which it is compared with, fails the test if it runs
    instead; with ``gathered``, so does turning top-k weights into a dense matrix."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adaptation_module, "adapt_generic", lambda *a, **k: pytest.fail("the oracle ran, not the fast path"))
        if gathered:
            patch.setattr(TopK, "dense", lambda *a: pytest.fail("top-k attention was made dense, not gathered"))
        yield


def _run(model, x, y, implementation):
    model.adaptation.implementation = implementation
    model.zero_grad()
    with _fast_only() if implementation == "fast" else contextlib.nullcontext():
        prediction = model(x)
    model.loss(prediction, y).backward()
    return prediction.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("head,task,adapt", CASES)
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("step_size", ["scalar", "layer", "diagonal"])
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_fast_path_matches_generic(head, task, adapt, steps, step_size, similarity, first_order, device):
    model, x, y = _build(
        head, task, adapt, device, inner_steps=steps, step_size=step_size, similarity=similarity,
        first_order=first_order,
    )
    assert fast_path_for(model.head, model.adaptation.step_size.names) is not None
    fast, fast_grads = _run(model, x, y, "fast")
    generic, generic_grads = _run(model, x, y, "generic")
    torch.testing.assert_close(fast, generic, rtol=1e-9, atol=1e-10)
    assert set(fast_grads) == set(generic_grads)
    for name, g in generic_grads.items():
        torch.testing.assert_close(fast_grads[name], g, rtol=1e-8, atol=1e-10, msg=f"gradient of {name}")
    # every trainable tensor of the method really receives a meta-gradient
    for name in ("dictionary.keys", "attention.log_temperature", "attention.log_scale", "extractor.weight"):
        assert generic_grads[name].abs().sum() > 0, name
    assert any(g.abs().sum() > 0 for n, g in generic_grads.items() if n.startswith("adaptation.step_size"))
    if task == "regression" or model.dictionary.value_kind == "learned":
        assert generic_grads["dictionary.raw_values"].abs().sum() > 0


@pytest.mark.parametrize("head", list(HEADS))
def test_fast_path_matches_generic_in_evaluation(head):
    model, x, _ = _build(head, "classification", "last" if head in LAST_ONLY else "all", inner_steps=2)
    model.eval()
    with torch.no_grad():
        model.adaptation.implementation = "fast"
        fast = model(x)
        model.adaptation.implementation = "generic"
        generic = model(x)
    assert not fast.requires_grad
    torch.testing.assert_close(fast, generic, rtol=1e-9, atol=1e-10)


def test_python_loop_matches_vmap():
    model, x, y = _build("mlp", "regression", "all", inner_steps=2)
    loop, loop_grads = _run(model, x, y, "loop")
    vmapped, vmapped_grads = _run(model, x, y, "generic")
    torch.testing.assert_close(loop, vmapped)
    for name, g in vmapped_grads.items():
        torch.testing.assert_close(loop_grads[name], g, msg=name)


def test_first_order_differs_from_second_order():
    grads = {}
    for first_order in (False, True):
        model, x, y = _build("mlp", "regression", "all", first_order=first_order)
        _, grads[first_order] = _run(model, x, y, "fast")
    assert not torch.allclose(grads[False]["head.layers.0.weight"], grads[True]["head.layers.0.weight"])


def test_masked_slots_get_no_weight_and_match():
    """Slot dropout reaches the inner loop only through zero attention weights: both paths agree."""
    torch.manual_seed(1)
    head = MLPHead(3, (4,), 2).double()
    adaptation = Adaptation(head, MNConfig(inner_steps=2)).double()
    z, keys, values = (torch.randn(n, d, dtype=torch.float64) for n, d in ((5, 3), (8, 3), (8, 2)))
    weights = torch.rand(5, 8, dtype=torch.float64) * (torch.rand(5, 8) > 0.5)
    weights = weights / weights.sum(1, keepdim=True)
    outputs = {}
    for implementation in ("fast", "generic"):
        adaptation.implementation = implementation
        outputs[implementation] = adaptation(head, z, keys, values, weights)
    torch.testing.assert_close(outputs["fast"], outputs["generic"])


class ConstantHead(nn.Module):
    """f(x) = c: the head under which Meta-Neighborhoods reduces to a soft kNN."""

    def __init__(self, out_features):
        super().__init__()
        self.in_features, self.out_features = 2, out_features
        self.c = nn.Parameter(torch.randn(out_features))

    def forward(self, x):
        return self.c.expand(len(x), -1)


def test_soft_knn_identity():
    """Constant head, squared loss, alpha = 1/2, one step: the attention-weighted mean of the values."""
    torch.manual_seed(2)
    model = MetaNeighborhoods(ConstantHead(3), dictionary_size=9, step_size_init=0.5, temperature=0.7).double()
    assert fast_path_for(model.head) is None  # a custom head goes through the generic path
    x = torch.randn(11, 2, dtype=torch.float64)
    keys = model.dictionary.keys
    temperature = model.attention.temperature.item()  # 0.7, kept as a float32 log
    assert temperature == pytest.approx(0.7, rel=1e-6)
    weights = (pairwise_similarity(x, keys, model.attention.similarity) / temperature).softmax(dim=1)  # Eq. 5
    expected = weights @ model.dictionary.values()
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["scalar", "layer", "diagonal"])
def test_a_step_size_stored_negative_steps_as_its_absolute_value(kind):
    """The step is |alpha|, as in the authors' code: a learned alpha that crosses zero never turns an inner step
    into gradient ascent on the neighbours' loss."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(4, (6,), 2), dictionary_size=7, step_size=kind, inner_steps=2).double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    predictions = []
    with torch.no_grad():
        for alpha in (0.3, -0.3, 0.0):
            for a in model.adaptation.step_size.parameters():
                a.fill_(alpha)
            predictions.append(model(x))
    torch.testing.assert_close(predictions[1], predictions[0], rtol=1e-12, atol=1e-12)
    assert (predictions[0] - predictions[2]).abs().max() > 1e-3  # the step moves the prediction at all


@pytest.mark.parametrize("top_k, dense_below", [(None, 32), (3, 64), (3, 0)])  # full, top-k dense, top-k gathered
def test_a_training_step_hides_slots_from_each_row(top_k, dense_below, monkeypatch):
    """Slot dropout reaches the attention through the model on every path: a training forward is the oracle on the
    weights the attention gives with the same draw, and differs from one without dropout."""
    monkeypatch.setattr(model_module, "DENSE_BELOW", dense_below)
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(4, (6,), 2), dictionary_size=7, top_k=top_k, slot_dropout=0.5).double()
    model.adaptation.implementation = "generic"
    x, keys, values = torch.randn(40, 4, dtype=torch.float64), model.dictionary.keys, model.dictionary.values()
    torch.manual_seed(5)
    trained = model(x)
    torch.manual_seed(5)
    if top_k is None:
        weights = model.attention(x, keys, model.dictionary.slot_mask(len(x)))
    elif dense_below:
        weights = model.attention.top_k_dense(x, keys, top_k, 0.5)
    else:
        weights = model.attention.top_k(x, keys, top_k, 0.5).dense(7)
    torch.testing.assert_close(trained, model.adaptation(model.head, x, keys, values, weights), rtol=1e-9, atol=1e-10)
    model.dictionary.slot_dropout = 0.0
    assert (trained - model(x)).abs().max() > 1e-6


def test_fast_implementation_refuses_custom_head():
    with pytest.raises(ValueError, match="no fast adaptation path for ConstantHead"):  # at once, not at a forward
        MetaNeighborhoods(ConstantHead(1), dictionary_size=3, implementation="fast")
    model = MetaNeighborhoods(ConstantHead(1), dictionary_size=3)
    model.adaptation.implementation = "fast"  # as the ONNX export switches it
    with pytest.raises(ValueError, match="no fast adaptation path for ConstantHead"):
        model(torch.randn(2, 2))


# ---------------------------------------------------------------------------------------------------
# Top-k attention


def _top_k_oracle(model, x):
    """The generic oracle on the whole dictionary, with attention masked to the same k keys per input."""
    z, keys, scaled = model.features(x), model.dictionary.keys, model.attention.scaled
    index = nearest(scaled(z), scaled(keys), model.attention.similarity, model.config.top_k)[1]
    weights = model.attention(z, keys, torch.zeros(keys.shape[0], dtype=torch.bool).expand(len(z), -1)
                              .scatter(1, index, True))
    model.adaptation.implementation = "generic"
    return model.adaptation(model.head, z, keys, model.dictionary.values(), weights)


def _prediction_and_grads(model, y, predict):
    model.zero_grad()
    prediction = predict()
    model.loss(prediction, y).backward()
    return prediction.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head,task,adapt", CASES)
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("step_size", ["scalar", "layer", "diagonal"])
@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("dense_below", [0, 64])  # each example's own k keys gathered, or dense over all keys
def test_top_k_matches_the_oracle_with_the_same_weights(head, task, adapt, steps, step_size, similarity, dense_below,
                                                        monkeypatch):
    monkeypatch.setattr(model_module, "DENSE_BELOW", dense_below)
    model, x, y = _build(head, task, adapt, inner_steps=steps, step_size=step_size, similarity=similarity,
                         top_k=3)
    assert model.config.neighbourhood_size(training=True) == 3
    model.adaptation.implementation = "auto"
    path = fast_path_for(model.head, model.adaptation.step_size.names)
    with _fast_only(gathered=dense_below == 0 and takes_top_k(path)):  # else: dense weights
        fast, fast_grads = _prediction_and_grads(model, y, lambda: model(x))
    oracle, oracle_grads = _prediction_and_grads(model, y, lambda: _top_k_oracle(model, x))
    torch.testing.assert_close(fast, oracle, rtol=1e-9, atol=1e-10)
    assert set(fast_grads) <= set(oracle_grads)
    for name, g in oracle_grads.items():
        torch.testing.assert_close(fast_grads.get(name, torch.zeros_like(g)), g, rtol=1e-8, atol=1e-10,
                                   msg=f"gradient of {name}")
    scaled = model.attention.scaled
    attended = nearest(scaled(model.features(x)), scaled(model.dictionary.keys), similarity, 3)[1].unique()
    touched = torch.nonzero(fast_grads["dictionary.keys"].abs().sum(1)).flatten()
    assert len(touched) > 0 and set(touched.tolist()) <= set(attended.tolist())



@pytest.mark.parametrize("setting", [{"inner_steps": 2}, {"step_size": "diagonal"}])
def test_rows_taking_their_own_step_gather_their_keys(setting, monkeypatch):
    """A row that takes its own step multiplies every key it attends to by the adapted weights: dense over all 64
    keys it did 16x the gathered path's work here (36x its time at 4,096 keys and k = 128, every layer adapted, two
    steps: ``benchmarks/own_step_paths.py``), where one step shared by the batch runs dense at 16 keys per k."""
    torch.manual_seed(0)
    shared = MetaNeighborhoods(MLPHead(8, (64, 64), 1), dictionary_size=64, top_k=4, adapt="all")
    own = MetaNeighborhoods(MLPHead(8, (64, 64), 1), dictionary_size=64, top_k=4, adapt="all", **setting).double()
    assert shared.runs_dense(64, 4) and not own.runs_dense(64, 4)
    last = MetaNeighborhoods(MLPHead(8, (64, 64), 1), dictionary_size=64, top_k=4, adapt="last", **setting)
    assert last.runs_dense(64, 4)  # a (64 + 1)-wide layer of one output: what a key costs is what it moves
    x, y = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    with _fast_only(gathered=True), pytest.MonkeyPatch.context() as patch:
        patch.setattr(own.attention, "top_k_dense", lambda *a: pytest.fail("the dense path ran"))
        gathered, gathered_grads = _prediction_and_grads(own, y, lambda: own(x))
    monkeypatch.setattr(model_module, "DENSE_BELOW", 10**6)
    assert own.runs_dense(64, 4)
    dense, dense_grads = _prediction_and_grads(own, y, lambda: own(x))
    torch.testing.assert_close(gathered, dense, rtol=1e-9, atol=1e-10)
    for name, g in dense_grads.items():
        torch.testing.assert_close(gathered_grads[name], g, rtol=1e-8, atol=1e-10, msg=f"gradient of {name}")

@pytest.mark.parametrize("head,task,adapt", CASES)
@pytest.mark.parametrize("dense_below", [0, 64])
def test_top_k_of_every_key_is_the_full_path(head, task, adapt, dense_below, monkeypatch):
    monkeypatch.setattr(model_module, "DENSE_BELOW", dense_below)
    model, x, y = _build(head, task, adapt, inner_steps=2)
    full, full_grads = _prediction_and_grads(model, y, lambda: model(x))
    top, top_grads = _prediction_and_grads(model, y, lambda: model.predict_top_k(model.features(x), 7))
    torch.testing.assert_close(top, full, rtol=1e-9, atol=1e-10)
    for name, g in full_grads.items():
        torch.testing.assert_close(top_grads[name], g, rtol=1e-8, atol=1e-10, msg=f"gradient of {name}")


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_each_similarity_takes_the_same_values_in_its_three_forms(similarity):
    """The pairs a row's own keys give and the ranking that chooses them are the full similarity's: a kind whose
    forms fell through to another's (an else branch) chose its keys by one similarity and weighted them by another."""
    assert set(KINDS) == set(SIMILARITIES)  # the names settings are checked against (config, without torch)
    form = kind_of(similarity)
    z, keys = torch.randn(5, 3, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    full, index = form.full(z, keys), torch.randint(9, (5, 4), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(form.pair(z, keys[index]), full.gather(1, index))
    assert torch.equal(form.ranking(z, keys).argsort(dim=1), full.argsort(dim=1))
    assert default_temperature(similarity, 3) > 0  # every kind has the estimators' temperature=None


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_nearest_scans_in_chunks_without_changing_the_choice(similarity):
    torch.manual_seed(3)
    z, keys = torch.randn(9, 4, dtype=torch.float64), torch.randn(50, 4, dtype=torch.float64)
    expected = pairwise_similarity(z, keys, similarity).topk(6, dim=1).indices
    for chunk_elements in (1, 63, 450, 10**6):  # chunks of 6 (never fewer than k), 7, 50 and all 50 keys
        chosen = nearest(z, keys, similarity, 6, chunk_elements=chunk_elements)[1]
        assert torch.equal(chosen, expected)  # most similar first, as slot dropout's first_visible relies on
        scores, unordered = nearest(z, keys, similarity, 6, chunk_elements=chunk_elements, ordered=False)
        assert torch.equal(unordered.sort(1).values, expected.sort(1).values)  # the same keys, in any order
        offset = scores - pairwise_similarity(z, keys, similarity).gather(1, unordered)
        torch.testing.assert_close(offset, offset[:, :1].expand_as(offset))  # similarities up to a constant per row


@pytest.mark.parametrize("hidden_share", [0.3, 0.9])  # enough visible in every row; too few in some
def test_nearest_visible_keeps_first_visibles_choice_without_sorting_the_candidates(hidden_share):
    torch.manual_seed(0)
    scores, index = torch.randn(50, 12, dtype=torch.float64), torch.randperm(600)[:600].view(50, 12)
    hidden = torch.rand(50, 12) < hidden_share
    chosen, chosen_hidden = nearest_visible(scores, index, hidden, 4)
    order = scores.argsort(dim=1, descending=True)
    expected, expected_hidden = first_visible(index.gather(1, order), hidden.gather(1, order), 4)
    position = chosen.sort(1).indices  # the same keys, in any order
    assert torch.equal(chosen.sort(1).values, expected.sort(1).values)
    if chosen_hidden is None:
        assert hidden_share == 0.3 and not expected_hidden.any()
    else:
        assert hidden_share == 0.9 and expected_hidden.any()
        assert torch.equal(chosen_hidden.gather(1, position), expected_hidden.gather(1, expected.sort(1).indices))


def test_first_visible_takes_the_nearest_visible_keys_and_hidden_ones_only_when_too_few_are_visible():
    index = torch.tensor([[7, 3, 9, 1, 4], [2, 8, 6, 5, 0]])
    hidden = torch.tensor([[True, False, True, False, False], [True, True, True, True, False]])
    chosen, chosen_hidden = first_visible(index, hidden, 3)
    assert chosen.tolist() == [[3, 1, 4], [0, 2, 8]]
    assert chosen_hidden.tolist() == [[False, False, False], [False, True, True]]


@pytest.mark.parametrize("form", ["top_k_dense", "top_k"])
def test_a_row_with_fewer_visible_keys_than_k_weights_only_those(form):
    """A row whose k candidates are partly hidden (a dictionary little larger than k, as the defaults' k = 128 of a
    table under about 260 training rows) gave its hidden fillers weight on the dense path: slot dropout leaked
    into training. Six keys, k = 4, half hidden: many rows see 1 to 3 keys, and only those get weight."""
    attention = Attention("euclidean", 1.0).double()
    generator = torch.Generator().manual_seed(0)
    z, keys = (torch.randn(n, 3, dtype=torch.float64, generator=generator) for n in (300, 6))
    torch.manual_seed(1)
    weights = getattr(attention, form)(z, keys, 4, slot_dropout=0.5)
    weights = weights if form == "top_k_dense" else weights.dense(6)
    seen = (weights > 0).sum(1)
    assert ((seen >= 1) & (seen < 4)).sum() > 50
    torch.testing.assert_close(weights.sum(1), torch.ones(300, dtype=torch.float64))


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_top_k_with_slot_dropout_attends_to_the_nearest_visible_candidates(similarity):
    """Each slot is hidden with probability p, drawn for the nearest n_candidates keys (in the order ``nearest``
    finds them); the k nearest visible ones get all the weight."""
    attention, k, p = Attention(similarity, 0.5), 4, 0.5
    torch.manual_seed(0)  # not the previous test's draws: the share below is checked within 4 standard deviations
    z, keys = torch.randn(400, 3, dtype=torch.float64), torch.randn(300, 3, dtype=torch.float64)
    torch.manual_seed(1)
    top = attention.top_k(z, keys, k, slot_dropout=p)
    _, candidates = nearest(z, keys, similarity, n_candidates(k, p, 300), ordered=False)
    torch.manual_seed(1)
    hidden = torch.rand(candidates.shape) < p
    for row, chosen in enumerate(top.index):
        order = pairwise_similarity(z[row : row + 1], keys[candidates[row]], similarity)[0].argsort(descending=True)
        visible = [int(key) for key in candidates[row][order] if not hidden[row, candidates[row] == key].item()]
        assert sorted(chosen.tolist()) == sorted(visible[:k])
    assert (top.weight > 0).all() and torch.allclose(top.weight.sum(1), torch.ones(400, dtype=torch.float64))
    nearest_one = nearest(z, keys, similarity, 1)[1]
    assert 0.4 < (top.index != nearest_one).all(1).double().mean() < 0.6  # the nearest key is hidden half the time


def test_top_k_weights_stay_finite_when_every_candidate_is_hidden():
    torch.manual_seed(0)
    top = Attention("euclidean", 1.0).top_k(torch.randn(200, 2), torch.randn(3, 2), 2, slot_dropout=0.9)
    assert torch.isfinite(top.weight).all() and torch.allclose(top.weight.sum(1), torch.ones(200))
    assert (top.weight == 0.5).all(dim=1).any()  # a row that saw none of its keys: uniform over the k chosen


@pytest.mark.parametrize("similarity", SIMILARITIES)
@pytest.mark.parametrize("form", ["full", "top_k", "top_k_dense"])
def test_a_learned_metric_compares_rows_and_keys_weighted_per_feature(similarity, form):
    """With log_scale = log s the weights are those of plain attention between z * s and k * s, gradients too;
    at its start (s = 1) the metric changes nothing."""
    torch.manual_seed(0)
    z, keys = torch.randn(16, 3, dtype=torch.float64), torch.randn(40, 3, dtype=torch.float64)
    learned, plain = Attention(similarity, 0.5, metric_dim=3).double(), Attention(similarity, 0.5).double()
    assert torch.equal(learned(z, keys), plain(z, keys))
    with torch.no_grad():
        learned.log_scale.copy_(torch.tensor([1.0, -2.0, 0.3]))
    scale = learned.log_scale.detach().exp().requires_grad_(True)

    def weights(attention, z, keys):
        torch.manual_seed(3)  # the same slot dropout draws
        if form == "full":
            return attention(z, keys)
        if form == "top_k_dense":
            return attention.top_k_dense(z, keys, 5, slot_dropout=0.5)
        top = attention.top_k(z, keys, 5, slot_dropout=0.5)
        return torch.zeros(16, 40, dtype=z.dtype).scatter(1, top.index, top.weight)

    ours, reference = weights(learned, z, keys), weights(plain, z * scale, keys * scale)
    torch.testing.assert_close(ours, reference)
    probe = torch.randn_like(ours)
    (ours * probe).sum().backward()
    (reference * probe).sum().backward()
    torch.testing.assert_close(learned.log_scale.grad, scale.grad * scale.detach())  # d/d log s = s d/ds
    assert learned.log_scale.grad.abs().min() > 0


@pytest.mark.parametrize("top_k", [0, -1, 2.5, "8", True])
def test_a_bad_top_k_is_refused_naming_it(top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        MNConfig(top_k=top_k)


@pytest.mark.parametrize("top_k, dropout, size, training, expected", [
    (32, 0.5, 4096, True, 32), (32, 0.5, 4096, False, 64), (32, 0.0, 4096, False, 32), (30, 0.25, 4096, False, 40),
    (3, 0.5, 5, False, None), (3, 0.5, 6, True, 3), (None, 0.5, 4096, False, None),
    (8, 0.0, 8, True, None), (80, 0.0, 8, True, None)])  # K >= S: every key
def test_evaluation_attends_to_the_neighbourhood_training_saw(top_k, dropout, size, training, expected):
    """Training shows each example (1 - dropout) of the slots, so its K nearest visible keys are about its
    K / (1 - dropout) nearest keys overall: evaluation, with every slot visible, attends to that many."""
    config = MNConfig(dictionary_size=size, top_k=top_k, slot_dropout=dropout)
    assert config.neighbourhood_size(training) == expected


def test_an_evaluating_model_attends_to_k_over_the_kept_share(monkeypatch):
    model = MetaNeighborhoods(MLPHead(3, (4,), 1), dictionary_size=50, top_k=5, slot_dropout=0.5)
    seen = []
    monkeypatch.setattr(model, "predict_top_k", lambda z, k, own_slot: seen.append(k) or z[:, :1])
    model(torch.randn(2, 3))
    model.eval()(torch.randn(2, 3))
    assert seen == [5, 10]


@pytest.mark.parametrize("size, dropout", [(7, 0.5), (64, 0.5), (4096, 0.5), (100, 0.9), (10, 0.05)])
def test_slot_dropout_shows_each_example_the_keep_slots_of_highest_score(size, dropout):
    """The mask is the top-k of the same random scores (drawn from a generator with the same seed), per row."""
    dictionary = InducedDictionary(MNConfig(dictionary_size=size, slot_dropout=dropout), 3, 1).train()
    mask = dictionary.slot_mask(32, torch.Generator().manual_seed(5))
    keep = max(1, round(size * (1 - dropout)))
    scores = torch.rand(32, size, generator=torch.Generator().manual_seed(5))
    expected = torch.zeros(32, size, dtype=torch.bool).scatter_(1, scores.topk(keep, dim=1).indices, True)
    assert torch.equal(mask, expected) and (mask.sum(1) == keep).all()
    assert dictionary.eval().slot_mask(32) is None


@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_leave_one_out_never_attends_to_a_rows_own_slot(similarity, dropout):
    """A row whose own key is in the dictionary (keys initialised at the training rows) never sees it while
    training; without slot dropout it attends to its k nearest other keys."""
    torch.manual_seed(0)
    keys = torch.randn(40, 3, dtype=torch.float64)
    z, own = keys[:30].clone(), torch.arange(30)  # rows 0..29 sit on their own keys
    own[5] = -1  # a row with no slot of its own
    attention = Attention(similarity, 0.5)
    top = attention.top_k(z, keys, 4, slot_dropout=dropout, own_slot=own)
    assert not (top.index == own[:, None]).any() and torch.isfinite(top.weight).all()
    if dropout == 0.0:
        others = pairwise_similarity(z, keys, similarity).scatter(1, own.clamp(min=0)[:, None], float("-inf"))
        others[5] = pairwise_similarity(z[5:6], keys, similarity)[0]
        assert torch.equal(top.index.sort(1).values, others.topk(4, dim=1).indices.sort(1).values)
    full = attention(z, keys, None, own)
    assert (full.gather(1, own.clamp(min=0)[:, None])[own >= 0] == 0).all()
    torch.testing.assert_close(full.sum(1), torch.ones(30, dtype=torch.float64))


@pytest.mark.parametrize("form, k", [("full", None), ("top_k", 1), ("top_k_dense", 1), ("top_k", 5),
                                     ("top_k_dense", 5)])
def test_a_row_that_sees_no_slot_still_never_attends_to_its_own(form, k):
    """Slot dropout can leave a row nothing visible on a small dictionary: the fallback spreads the weight over the
    other slots (full attention) or the k chosen ones (top-k), never onto the row's own key."""
    torch.manual_seed(0)
    attention, keys = Attention("euclidean", 1.0).double(), torch.randn(5, 3, dtype=torch.float64)
    z, own = keys.repeat(400, 1), torch.arange(5).repeat(400)  # 2,000 rows, each on its own key
    if form == "full":
        mask = torch.rand(len(z), 5) < 0.2  # most rows see one slot or none
        weights = attention(z, keys, mask, own)
        assert (~(mask & (torch.arange(5) != own[:, None])).any(1)).sum() > 100  # the fallback ran, often
    else:
        weights = getattr(attention, form)(z, keys, k, slot_dropout=0.5, own_slot=own)  # k = 5: every key
        weights = weights.dense(5) if form == "top_k" else weights
    assert (weights.gather(1, own[:, None]) == 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(len(z), dtype=torch.float64))


def test_an_evaluating_model_ignores_own_slots():
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(3, (4,), 1), dictionary_size=20, top_k=3).eval()
    x = model.dictionary.keys[:5].detach().clone()
    torch.testing.assert_close(model(x, torch.arange(5)), model(x))


@pytest.mark.parametrize("head,task,adapt", CASES)
def test_evaluating_a_few_rows_passes_only_the_keys_they_attend_to(head, task, adapt):
    """At evaluation, rows whose k keys together are fewer than the dictionary pass only those through the inner
    loop (``predict_top_k``): the same predictions and gradients as the oracle over every key."""
    model, x, y = _build(head, task, adapt, inner_steps=2, top_k=1)
    model.eval()
    passed = []
    model.adaptation.register_forward_pre_hook(lambda module, args: passed.append(args[2].shape[0]))
    k = model.config.neighbourhood_size(training=False)
    for rows in (1, 3):
        prediction, grads = _prediction_and_grads(model, y[:rows], lambda: model(x[:rows]))
        assert passed.pop() <= rows * k < model.dictionary.size
        oracle, oracle_grads = _prediction_and_grads(model, y[:rows], lambda: _top_k_oracle(model, x[:rows]))
        model.adaptation.implementation = "auto"
        torch.testing.assert_close(prediction, oracle, rtol=1e-9, atol=1e-10)
        for name, g in oracle_grads.items():
            torch.testing.assert_close(grads.get(name, torch.zeros_like(g)), g, rtol=1e-8, atol=1e-10,
                                       msg=f"gradient of {name}")
    every_key = model(x.repeat(2, 1))[: len(x)]  # 12 rows x k >= 7 keys: the path over every key
    assert passed.pop() == model.dictionary.size
    with torch.no_grad():  # shapes that follow the rows alone: vmap over single rows takes it
        torch.testing.assert_close(vmap(lambda row: model(row[None])[0])(x), every_key, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("far", [1e6, 1e8, 1e10])
def test_a_row_alone_gets_what_it_gets_in_a_batch_even_far_from_every_key(far):
    """float32, Euclidean: at 1e8 the dense similarities (2 z.k - |z|^2 - |k|^2) keep few of their digits, so the
    few-rows path must take the same numbers as a batch does, not the exact pairwise ones (0.37 apart before)."""
    torch.manual_seed(0)
    model = MetaNeighborhoods(MLPHead(5, (8,), 1), dictionary_size=40, top_k=8, similarity="euclidean",
                              step_size_init=0.3).eval()
    x = torch.randn(12, 5)  # 12 rows x 8 keys >= 40 keys: the batch runs dense over every key
    x[0, 0] = far
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), model(x)[:1], rtol=1e-6, atol=0)


@pytest.mark.parametrize("adapt", ["all", "last"])
@pytest.mark.parametrize("top_k", [None, 3])
@pytest.mark.parametrize("dense_below", [0, 64])
def test_a_batch_draw_is_the_plain_model_on_the_kept_slots(adapt, top_k, dense_below, monkeypatch):
    """With ``slot_draw="batch"`` a training step is the model without slot dropout on the slots the batch kept:
    the same predictions and meta-gradients, none reaching a hidden key, and own slots renumbered to the kept."""
    monkeypatch.setattr(model_module, "DENSE_BELOW", dense_below)
    model, x, y = _build("mlp", "regression", adapt, top_k=top_k, slot_dropout=0.5, slot_draw="batch")
    model.dictionary.keys.data[:3] = model.features(x[:3]).detach()  # rows 0-2 sit on their own keys
    own = torch.tensor([0, 1, 2, -1, -1, -1])
    torch.manual_seed(11)
    prediction, grads = _prediction_and_grads(model, y, lambda: model(x, own))
    torch.manual_seed(11)
    keys, values, hidden, kept_own = model.dictionary.visible(own)
    assert hidden == 0.0 and len(keys) == 4 and len(torch.cat([keys, model.dictionary.keys]).unique(dim=0)) == 7
    for row in range(3):  # a kept own slot points at the same key; a hidden one at none
        kept = (keys == model.dictionary.keys[row]).all(1)
        assert kept_own[row] == (kept.nonzero().item() if kept.any() else -1)
    plain = copy.deepcopy(model)
    plain.config = plain.config.replace(dictionary_size=4, slot_dropout=0.0)
    plain.dictionary = InducedDictionary(plain.config, 4, 3).double()
    with torch.no_grad():
        plain.dictionary.keys.copy_(keys)
        plain.dictionary.raw_values.copy_(values)
    expected, expected_grads = _prediction_and_grads(plain, y, lambda: plain(x, kept_own))
    torch.testing.assert_close(prediction, expected, rtol=1e-9, atol=1e-10)
    for name, g in expected_grads.items():
        if not name.startswith("dictionary."):
            torch.testing.assert_close(grads[name], g, rtol=1e-8, atol=1e-10, msg=f"gradient of {name}")
    hidden_keys = ~(model.dictionary.keys[:, None] == keys[None]).all(2).any(1)
    assert (grads["dictionary.keys"][hidden_keys] == 0).all() and grads["dictionary.keys"].abs().sum() > 0


def test_a_batch_draw_shows_each_slot_with_the_kept_share_and_all_of_them_at_evaluation():
    dictionary = InducedDictionary(MNConfig(dictionary_size=10, slot_dropout=0.3, slot_draw="batch"), 2, 1).train()
    torch.manual_seed(0)
    seen = torch.zeros(10)
    for _ in range(2000):
        keys, _, _, _ = dictionary.visible()
        assert len(keys) == 7
        seen += (dictionary.keys[:, None] == keys[None]).all(2).any(1)
    assert ((seen - 1400).abs() < 90).all()  # 0.7 of 2,000 draws each, binomial sd 20
    keys, values, hidden, own = dictionary.eval().visible(torch.arange(3))
    assert keys is dictionary.keys and hidden == 0.0 and torch.equal(own, torch.arange(3))


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_written_out_inner_gradient_is_autograd_s_for_any_targets(task):
    """Targets of any mass (a classifier's learned values need not sum to 1): d loss / d prediction, and its own
    derivative for the second-order step, are autograd's."""
    from meta_neighborhoods.inner_loss import inner_loss, loss_gradient

    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(6, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.rand(6, 4, dtype=torch.float64, generator=generator) * 3
    expected, = torch.autograd.grad(inner_loss(task, prediction, target).sum(), prediction, create_graph=True)
    written = loss_gradient(task, prediction, target)
    torch.testing.assert_close(written, expected)
    upstream = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(*(torch.autograd.grad((g * upstream).sum(), prediction, retain_graph=True)[0]
                                 for g in (written, expected)))


def test_learned_class_values_start_near_uniform_as_the_authors():
    """Classification values are softmax(VALUE_SCALE * raw) with raw ~ N(0, 0.1^2): logits of std 1, near-uniform
    class distributions at the start (image classification starts its dictionary there: key_init='gaussian'). At
    raw ~ N(0, 1) every slot would start as a near one-hot random label."""
    torch.manual_seed(0)
    dictionary = InducedDictionary(MNConfig(task="classification", dictionary_size=512), 4, 3)
    assert 0.08 < float(dictionary.raw_values.detach().std()) < 0.12
    assert float(dictionary.values().detach().max(dim=1).values.mean()) < 0.7


def test_the_python_loop_runs_each_example_without_vmap(monkeypatch):
    """implementation='loop' is the escape from vmap (a head vmap cannot batch): it must not run through vmap."""
    model, x, _ = _build("mlp", "regression", "all", inner_steps=2)
    model.adaptation.implementation = "loop"
    monkeypatch.setattr(adaptation_module, "vmap", lambda *a, **k: pytest.fail("vmap ran, not the Python loop"))
    assert model(x).shape == (6, 3)


def test_one_inner_step_of_an_mlp_head_shares_the_per_key_backpropagation(monkeypatch):
    """One step (scalar or per-layer alpha) takes the shared path, O(B S) work per layer; only several steps or a
    diagonal alpha take per-example weights (``_mlp_step``)."""
    from meta_neighborhoods.heads import mlp

    monkeypatch.setattr(mlp, "_mlp_step", lambda *a, **k: pytest.fail("one step took the per-example path"))
    for step_size in ("scalar", "layer"):
        model, x, _ = _build("mlp", "regression", "all", inner_steps=1, step_size=step_size)
        model.adaptation.implementation = "fast"
        model(x)
