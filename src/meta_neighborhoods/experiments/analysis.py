"""Analysis of a trained image classifier's learned neighbours: Figs. 4, 5 and 6 (Appendix A.8) of the paper.

``run_analysis(run_dir, what)`` reloads a ``classify`` run (its ``best`` checkpoint, and the data set named in its
``config.json``) and writes, next to each PNG, a JSON file with every number in it:

* ``tsne`` (Fig. 5): features z of N training images (the images the run trained on, a seeded sample) and the S keys,
  embedded together by t-SNE (``init="pca"``, seeded). The model compares features with keys by cosine similarity, so
  with a cosine attention both are L2-normalised before the embedding (Euclidean distance between unit vectors is a
  monotone function of their cosine). Keys are coloured by the argmax of their value. The JSON holds the 2-D
  coordinates, the labels, and the share of keys whose nearest training feature has the key's class (in the embedding,
  and, for reference, in feature space under the attention's similarity).
* ``cosine`` (Fig. 4): for each test image, cos(z_i, prototype_{y_i}) before and after the per-input finetuning of the
  cosine head. The head computes ``tau * cos(z, W[:, c])`` before and ``tau * cos(z, W_i[:, c])`` after (the same
  learned tau), so both cosines are the head's logits divided by tau: ``model.head(z)`` before,
  ``model.predict_features(z)`` (evaluation mode: every slot) after. The share of points above the diagonal is the
  number Fig. 4 shows; a point within ``DIAGONAL_TOLERANCE`` of it (no change) counts as on it, not above, and the
  shares above, below and on it are all given. Test accuracy before vs after adaptation comes with them.
* ``retrieval`` (Appendix A.8): for chosen keys (by default 2 per value class, the most confident, at most 20 rows),
  the 5 test images whose features are most cosine-similar to the key, and the share of them whose label is the key's
  value class. Each row is labelled with the key's value class and v, the probability the key's value (a learned
  class distribution) gives that class.

A vanilla run has no dictionary and is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import runs
from ..config import KEYS_PER_CLASS, MAX_KEYS, RETRIEVED, TSNE_SAMPLES, ClassificationConfig
from ..datasets.batches import ImageBatches
from ..datasets.images import ImageDataset, ImageSplit, load_image_dataset
from ..image_methods import METHODS
from ..io import lock, prepare_out_dir, reading, refuse_other_runs, staged, write_json
from ..model import MetaNeighborhoods
from ..plots import cosine_figure, retrieval_figure, tsne_figure
from ..provenance import provenance
from ..run_files import ANALYSES, analyses_in, analysis_files
from ..similarity import similarity
from ..training import resolve_device
from ..validation import ConfigError, check_int, check_seed

DIAGONAL_TOLERANCE = 1e-6  # |after - before| up to this is "no change": float32 rounding of the same cosine
RETRIEVAL_CAPTION = ("Each row: one learned neighbour (key), labelled with its value class and v, the probability "
                     "its learned value (a class distribution) gives that class, i.e. how sure the key is of its "
                     "class. Green outline: the test image's label is the key's class; red: it is not.")
FEATURE_BATCH = 256
LOGGER = logging.getLogger(__name__)


@dataclass(eq=False)
class LoadedRun:
    """A ``classify`` run back in memory: the model in evaluation mode, its data set and its training images."""

    run_dir: Path
    config: ClassificationConfig
    model: MetaNeighborhoods
    dataset: ImageDataset
    split: runs.Split  # what the run recorded: its training images, and the normalisation of its inputs
    train: ImageSplit  # the images the run trained on (validation held out, ``train_subset`` applied)
    checkpoint_sha256: str  # of the best checkpoint's manifest, which names its weights by theirs: which one it was
    device: torch.device
    cache: dict = field(default_factory=dict)  # features already computed, by (split name, indices)


def load_run(run_dir, data_dir=None, cache_dir=None, device: str = "cpu") -> LoadedRun:
    """Rebuild the best model of ``run_dir`` and reload its data set; refuse a vanilla run before loading data.

    The run folder is checked first (``runs.read_config``); ``data_dir`` / ``cache_dir`` are the caller's (or the
    defaults), never paths stored in the folder. The training images are the ones the run recorded in
    ``split.json``, not a split derived again.
    """
    run_dir = Path(run_dir)
    model, info = runs.load_best_model(run_dir, among=tuple(name for name, kind in METHODS.items()
                                                             if kind.dictionary))  # what has keys to analyse
    checkpoint_sha256 = runs.best_sha256(run_dir)
    if not info["model_args"].get("dictionary_size"):
        raise ValueError(f"{run_dir} is a {info['model_args'].get('method', 'vanilla')!r} run: it has no dictionary "
                         "of learned neighbours to analyse; pass an mn or mn_ifilm run")
    config = runs.read_config(run_dir, data_dir, cache_dir)
    torch_device = resolve_device(device)
    model.to(torch_device).eval()
    dataset = load_image_dataset(config.dataset, config.data_dir, config.cache_dir, **config.image_options)
    args, images = info["model_args"], dataset.train.images
    if (args["in_channels"], args["num_classes"]) != (images.shape[1], len(dataset.classes)):
        raise ValueError(f"{run_dir}: its network takes {args['in_channels']}-channel images of {args['num_classes']} "
                         f"classes, but {config.dataset} (named in its config.json) has {images.shape[1]} channels and "
                         f"{len(dataset.classes)} classes: the folder's files disagree")
    split = runs.read_split_of(run_dir, dataset)
    train = ImageSplit(dataset.train.images[split.train], dataset.train.labels[split.train])
    return LoadedRun(run_dir, config, model, dataset, split, train, checkpoint_sha256, torch_device)


@torch.no_grad()
def features(run: LoadedRun, split: ImageSplit) -> torch.Tensor:
    """Features z (N, d) of a split's images (normalised as in training, no augmentation), float32 on the CPU."""
    run.model.eval()
    batches = ImageBatches(split, run.split.mean, run.split.std, batch_size=FEATURE_BATCH)
    return torch.cat([run.model.features(x.to(run.device)).float().cpu() for x, _ in batches])


def _features_of(run: LoadedRun, name: str, index: np.ndarray) -> tuple[ImageSplit, torch.Tensor]:
    """(the images ``index`` of split ``name``, their features), computed once per run and sample."""
    split = _subset(run.train if name == "train" else run.dataset.test, index)
    key = (name, index.tobytes())
    if key not in run.cache:
        run.cache[key] = features(run, split)
    return split, run.cache[key]


def _sample(n_total: int, samples: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``samples`` out of ``n_total`` (all of them when None or larger)."""
    if samples is not None:
        check_int("samples", samples)
    if samples is None or samples >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=samples, replace=False))


def _subset(split: ImageSplit, index: np.ndarray) -> ImageSplit:
    return ImageSplit(split.images[index], split.labels[index])


def _key_classes(run: LoadedRun) -> tuple[np.ndarray, np.ndarray]:
    """(class, probability) of each key's value: its argmax and max."""
    values = run.model.dictionary.values().detach().float().cpu()
    top = values.max(dim=1)
    return top.indices.numpy(), top.values.numpy()


def _config(run: LoadedRun, what: str, samples, seed: int, **extra) -> dict:
    """What an analysis's record says it was run with: its settings, the run's and which of its checkpoints, and
    the versions and command."""
    return {"analysis": what, "run": str(run.run_dir), "checkpoint_sha256": run.checkpoint_sha256, "samples": samples,
            "seed": seed, "dataset": run.config.dataset, "backbone": run.config.backbone,
            "method": run.config.method, "device": str(run.device), **extra, "provenance": provenance()}


# ---------------------------------------------------------------------------------------------------
# Fig. 5: t-SNE of keys among training features


def analyze_tsne(run: LoadedRun, out, samples: int | None = TSNE_SAMPLES, seed: int = 0) -> dict:
    """t-SNE of ``samples`` training features and every key; writes ``tsne.png`` and ``tsne.json``."""
    from sklearn.manifold import TSNE

    out = prepare_out_dir(out)
    index = _sample(len(run.train), samples, seed)
    LOGGER.info("tsne: features of %d training images", len(index))
    split, z = _features_of(run, "train", index)
    labels = split.labels
    keys = run.model.dictionary.keys.detach().float().cpu()
    key_classes, key_max = _key_classes(run)
    normalised = run.model.attention.similarity == "cosine"
    points = torch.cat([z, keys])
    if normalised:
        points = F.normalize(points, dim=-1)
    perplexity = float(min(30.0, (len(points) - 1) / 3))
    LOGGER.info("tsne: embedding %d features and %d keys (perplexity %g)", len(index), len(keys), perplexity)
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(
        points.numpy().astype(np.float64))
    train_xy, key_xy = xy[: len(index)], xy[len(index):]

    nearest_2d = ((key_xy[:, None, :] - train_xy[None, :, :]) ** 2).sum(-1).argmin(axis=1)
    nearest_feature = similarity(keys, z, run.model.attention.similarity).argmax(dim=1).numpy()
    result = {
        "config": _config(run, "tsne", samples, seed, perplexity=perplexity, init="pca", normalised=normalised),
        "train_images": len(index), "dictionary_size": len(keys), "class_names": run.dataset.classes,
        "key_nearest_same_class_share": float(np.mean(labels[nearest_2d] == key_classes)),
        "key_nearest_same_class_share_feature_space": float(np.mean(labels[nearest_feature] == key_classes)),
        "train": {"indices": index.tolist(), "labels": labels.tolist(), "xy": train_xy.tolist(),
                  "indices_into": "the run's training images: the train split minus its validation hold-out"},
        "keys": {"labels": key_classes.tolist(), "max_value": key_max.tolist(), "xy": key_xy.tolist(),
                 "nearest_train": nearest_2d.tolist()},
        "files": list(analysis_files("tsne")),
    }
    title = (f"{run.config.dataset}: t-SNE of {len(index)} training features (dots) and {len(keys)} keys (+);\n"
             f"keys whose nearest training feature shares their class: {result['key_nearest_same_class_share']:.2f} "
             f"in the plane, {result['key_nearest_same_class_share_feature_space']:.2f} in feature space")
    figure, record = analysis_files("tsne")
    tsne_figure(out / figure, train_xy, labels, key_xy, key_classes, run.dataset.classes, title)
    write_json(out / record, result)
    return result


# ---------------------------------------------------------------------------------------------------
# Fig. 4: cosine to the ground-truth prototype before vs after finetuning


@torch.no_grad()
def prototype_cosines(model: MetaNeighborhoods, z: torch.Tensor, labels: torch.Tensor,
                      batch_size: int = FEATURE_BATCH):
    """(before, after, logits_before, logits_after): cos(z_i, prototype_{y_i}) with the shared head and with the
    head adapted to input i (evaluation mode), as the logits divided by the cosine head's tau.

    Batched: the adapted head holds per-example prototypes (B, d, C)."""
    model.eval()
    tau = model.head.scale
    logits_before = torch.cat([model.head(part) for part in z.split(batch_size)])
    logits_after = torch.cat([model.predict_features(part) for part in z.split(batch_size)])
    rows = torch.arange(len(z), device=z.device)
    return (logits_before[rows, labels] / tau, logits_after[rows, labels] / tau, logits_before, logits_after)


def diagonal_shares(before: np.ndarray, after: np.ndarray, tolerance: float = DIAGONAL_TOLERANCE) -> dict:
    """Shares of the points above (after > before), below and on the diagonal of Fig. 4; a point within
    ``tolerance`` of it is on it, so an adaptation that changes nothing shows 0 % above, as the picture does. The
    median distance from the diagonal says whether "above" is a visible shift or a hair's breadth."""
    change = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    return {"share_above_diagonal": float(np.mean(change > tolerance)),
            "share_below_diagonal": float(np.mean(change < -tolerance)),
            "share_on_diagonal": float(np.mean(np.abs(change) <= tolerance)), "diagonal_tolerance": tolerance,
            "median_abs_change": float(np.median(np.abs(change)))}


def cosine_title(dataset: str, shares: dict, accuracy_before: float, accuracy_after: float, images: int) -> str:
    """The title of Fig. 4: what the points show (above, below, on the diagonal) and the accuracies."""
    return (f"{dataset}: {images} test images, accuracy {accuracy_before:.4f} before, {accuracy_after:.4f} after "
            f"finetuning\n{shares['share_above_diagonal']:.1%} above the diagonal, "
            f"{shares['share_below_diagonal']:.1%} below, {shares['share_on_diagonal']:.1%} on it\n"
            f"(on it: |after - before| <= {shares['diagonal_tolerance']:g}; median |after - before| "
            f"{shares['median_abs_change']:.1e})")


def analyze_cosine(run: LoadedRun, out, samples: int | None = None, seed: int = 0) -> dict:
    """Fig. 4 on ``samples`` test images (all when None); writes ``cosine.png`` and ``cosine.json``."""
    out = prepare_out_dir(out)
    index = _sample(len(run.dataset.test), samples, seed)
    LOGGER.info("cosine: %d test images", len(index))
    split, z = _features_of(run, "test", index)
    z = z.to(run.device)
    labels = torch.from_numpy(split.labels).to(run.device)
    before, after, logits_before, logits_after = prototype_cosines(run.model, z, labels)
    before, after = before.float().cpu().numpy(), after.float().cpu().numpy()
    result = {
        "config": _config(run, "cosine", samples, seed),
        "test_images": len(index), "tau": float(run.model.head.scale.detach()),
        "mean_before": float(before.mean()), "mean_after": float(after.mean()),
        "median_before": float(np.median(before)), "median_after": float(np.median(after)),
        **diagonal_shares(before, after),
        "accuracy_before": float((logits_before.argmax(dim=1) == labels).float().mean()),
        "accuracy_after": float((logits_after.argmax(dim=1) == labels).float().mean()),
        "indices": index.tolist(), "labels": split.labels.tolist(),
        "before": before.tolist(), "after": after.tolist(),
        "files": list(analysis_files("cosine")),
    }
    title = cosine_title(run.config.dataset, result, result["accuracy_before"], result["accuracy_after"], len(index))
    figure, record = analysis_files("cosine")
    cosine_figure(out / figure, before, after, title)
    write_json(out / record, result)
    return result


# ---------------------------------------------------------------------------------------------------
# Appendix A.8: nearest test images of each learned neighbour


def select_keys(key_classes: np.ndarray, key_max: np.ndarray, keys_per_class: int | None = KEYS_PER_CLASS,
                max_keys: int | None = MAX_KEYS) -> np.ndarray:
    """Keys ordered by value class, the most confident first within a class: ``keys_per_class`` per class
    (None: all), then the first ``max_keys`` (None: all)."""
    for name, number in (("keys_per_class", keys_per_class), ("max_keys", max_keys)):
        if number is not None:
            check_int(name, number)
    chosen = []
    for c in np.unique(key_classes):
        members = np.flatnonzero(key_classes == c)
        members = members[np.argsort(-key_max[members], kind="stable")]
        chosen.extend(members[:keys_per_class] if keys_per_class is not None else members)
    return np.array(chosen[:max_keys] if max_keys is not None else chosen, dtype=np.int64)


def analyze_retrieval(run: LoadedRun, out, samples: int | None = None, seed: int = 0,
                      keys_per_class: int | None = KEYS_PER_CLASS, max_keys: int | None = MAX_KEYS,
                      k: int = RETRIEVED) -> dict:
    """The ``k`` test images (out of ``samples``, all when None) nearest to each chosen key by cosine similarity of
    features; writes ``retrieval.png`` and ``retrieval.json``."""
    out = prepare_out_dir(out)
    index = _sample(len(run.dataset.test), samples, seed)
    if len(index) < k:
        raise ConfigError(f"retrieval needs at least {k} test images, got {len(index)}")
    LOGGER.info("retrieval: features of %d test images", len(index))
    split, z = _features_of(run, "test", index)
    keys = run.model.dictionary.keys.detach().float().cpu()
    key_classes, key_max = _key_classes(run)
    chosen = select_keys(key_classes, key_max, keys_per_class, max_keys)
    cosines = F.normalize(keys[chosen], dim=-1) @ F.normalize(z, dim=-1).T
    top = cosines.topk(k, dim=1)
    rows = []
    for row, key in enumerate(chosen):
        local = top.indices[row].numpy()
        retrieved = split.labels[local]
        rows.append({"key": int(key), "value_class": int(key_classes[key]), "max_value": float(key_max[key]),
                     "indices": index[local].tolist(), "labels": retrieved.tolist(),
                     "similarities": top.values[row].tolist(),
                     "same_class_share": float(np.mean(retrieved == key_classes[key]))})
    correct = np.array([[label == r["value_class"] for label in r["labels"]] for r in rows], dtype=bool)
    result = {
        "config": _config(run, "retrieval", samples, seed, keys_per_class=keys_per_class, max_keys=max_keys,
                          k=k, similarity="cosine"),
        "test_images": len(index), "dictionary_size": len(keys), "class_names": run.dataset.classes,
        "same_class_share": float(correct.mean()), "keys": rows,
        "files": list(analysis_files("retrieval")),
    }
    images = run.dataset.test.images[np.array([r["indices"] for r in rows])]
    names = run.dataset.classes
    labels = [f"key {r['key']}: {names[r['value_class']]}\nv = {r['max_value']:.2f}" for r in rows]
    title = (f"{run.config.dataset}: {k} nearest test images of {len(rows)} learned neighbours "
             f"(green = key's class; {result['same_class_share']:.0%})")
    figure, record = analysis_files("retrieval")
    result["grid"] = list(retrieval_figure(out / figure, images, labels, correct, title, RETRIEVAL_CAPTION))
    write_json(out / record, result)
    return result


# ---------------------------------------------------------------------------------------------------


def _claim_analyses(run_dir: Path, out: Path | None, names, overwrite: bool) -> tuple[Path, list[str]]:
    """Where the analyses ``names`` of ``run_dir`` go, refused before any work as ``run_analysis`` says, and the files
    there of other analyses, which go before these are written (another --out, with ``overwrite``): a folder of
    analyses then holds one run's, never a t-SNE of one run beside the cosines of another."""
    if out is None or out.resolve() == run_dir.resolve():
        return run_dir, []
    if out.is_dir():
        refuse_other_runs(out, "classify")  # a table or spiral run's: analyses would mix with it
    held = runs.holds_a_run(out) if out.is_dir() else []
    if held:
        raise runs.RunFolderError(f"{out} holds another classify run ({', '.join(held[:3])}): analyses of {run_dir} "
                                  "would pass for its own; choose another --out")
    found = analyses_in(out)
    if found and not overwrite:
        raise FileExistsError(f"{out} already holds analyses ({', '.join(found[:4])}): replace them with --overwrite, "
                              "or choose another --out")
    return out, [file for file in found if Path(file).stem not in names]


def run_analysis(run_dir, what: str = "all", out=None, data_dir=None, cache_dir=None, samples: int | None = None,
                 seed: int = 0, device: str = "cpu", keys_per_class: int | None = KEYS_PER_CLASS,
                 max_keys: int | None = MAX_KEYS, overwrite: bool = False) -> dict:
    """Run ``what`` (one of ``ANALYSES`` or ``"all"``) on a classify run; files go to ``out`` (default: the run,
    whose earlier analyses they replace). Another ``out`` that holds analyses is refused unless ``overwrite``, which
    replaces them all; one that holds another run always: its analyses would pass for that run's. The run is read
    under its lock (a classify run still writing it is refused), and the files take their places together when all
    are written (``io.staged``): an interrupted analysis leaves the earlier ones whole.

    ``samples`` is the number of training images for ``tsne`` (default ``TSNE_SAMPLES``) and of test images for
    ``cosine`` and ``retrieval`` (default: all). Returns ``{analysis: result}``.
    """
    if what != "all" and what not in ANALYSES:
        raise ConfigError(f"unknown analysis {what!r}; choose one of {', '.join(ANALYSES)}, all", "what")
    check_seed("seed", seed, limit=2**32)  # numpy's and t-SNE's generators take seeds below 2**32
    _sample(1, samples, seed)  # validates samples and the key selection before any loading
    select_keys(np.zeros(1, dtype=np.int64), np.ones(1), keys_per_class, max_keys)
    run_dir = runs.run_folder(run_dir)
    names = ANALYSES if what == "all" else (what,)
    out, others = _claim_analyses(run_dir, None if out is None else Path(out), names, overwrite)
    with reading(run_dir):  # a classify run still writing it is named
        run = load_run(run_dir, data_dir, cache_dir, device)  # refused runs and missing data leave no folder behind
    out = prepare_out_dir(out)
    with runs.lock(out) if out == run_dir else lock(out), staged(out, others) as stage:
        results = {}
        for name in names:
            if name == "tsne":
                results[name] = analyze_tsne(run, stage, TSNE_SAMPLES if samples is None else samples, seed)
            elif name == "cosine":
                results[name] = analyze_cosine(run, stage, samples, seed)
            else:
                results[name] = analyze_retrieval(run, stage, samples, seed, keys_per_class, max_keys)
        return results
