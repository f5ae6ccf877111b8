"""scikit-learn estimators: ``MetaNeighborhoodsRegressor`` and ``MetaNeighborhoodsClassifier``.

Tables use the paper's regression setting by default: identity feature extractor, keys in (standardised) input
space, and a head that is the same MLP as the vanilla baseline. ``dictionary_size=0`` *is* that baseline: the
same network trained the same way, without neighbours. ``head`` and ``extractor`` bring one's own network
(``factories.py``); rows may be dense or sparse and weighted (``estimator_rows.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data
from torch import nn

from . import export, incremental, persistence
from . import estimator_docs as docs
from . import estimator_method_docs as method_docs
from .callbacks import Progress, report
from .config import ESTIMATOR
from .datasets.batches import TensorBatches
from .estimator_method_docs import doc
from .estimator_settings import (check_labels, fit_classes, network_description, own_init, same_as_fitted,
                                 unchanged_if_raised, warm_fit, warn_if_cut_short)
from .factories import build_extractor, build_network
from .estimator_rows import (early_stopping_split, farthest, in_blocks, numeric_columns, prediction_rows, standardise,
                          standardised_rows, standardiser, training_rows)
from .training import fit_early_stopping, resolve_device, torch_globals
from .training_state import Carried, OptimizerSpec

FITTED = ("x_mean_", "x_scale_", "network_", "n_iter_", "best_epoch_", "loss_curve_", "validation_loss_curve_",
          "best_loss_", "selected_", "validation_losses_", "n_features_in_", "feature_names_in_")  # and model_


class _Rows(NamedTuple):
    """The rows fit trains on: X, the positions used (``rows``) split into training and validation positions among
    them, the standardised training rows, what goes with each row (target, weight), outputs, and the seed."""

    X: object
    rows: np.ndarray
    train: np.ndarray
    valid: np.ndarray | None
    X_train: torch.Tensor
    per_row: list
    n_outputs: int
    seed: int
    warm: bool  # continue the fitted network (warm_start)


class _MetaNeighborhoodsEstimator(BaseEstimator):
    """What the regressor and classifier share: parameters, network, training loop, batched prediction.

    The parameters and fitted attributes are documented once, in ``estimator_docs.py``, for both public classes.
    The defaults were chosen by one rule over gom, gom-longitude and the nine UCI tables, with repeated CV
    (``docs/results/defaults.md``).
    """

    _task: str
    # the HTML repr shows a parameter's documentation only beside a link: the installed text works offline
    _doc_link_module = "meta_neighborhoods"
    _doc_link_template = Path(docs.__file__).resolve().as_uri()

    def __init__(
        self,
        hidden_layer_sizes=ESTIMATOR.hidden_layer_sizes,
        dictionary_size=ESTIMATOR.dictionary_size,
        top_k=ESTIMATOR.top_k,
        similarity=ESTIMATOR.similarity,
        temperature=ESTIMATOR.temperature,
        learn_temperature=ESTIMATOR.learn_temperature,
        learn_metric=ESTIMATOR.learn_metric,
        slot_dropout=ESTIMATOR.slot_dropout,
        slot_draw=ESTIMATOR.slot_draw,
        inner_steps=ESTIMATOR.inner_steps,
        step_size=ESTIMATOR.step_size,
        step_size_init=ESTIMATOR.step_size_init,
        adapt=ESTIMATOR.adapt,
        key_init=ESTIMATOR.key_init,
        learn_dictionary=ESTIMATOR.learn_dictionary,
        key_lr_scale=ESTIMATOR.key_lr_scale,
        leave_one_out=ESTIMATOR.leave_one_out,
        vanilla_fallback=ESTIMATOR.vanilla_fallback,
        max_epochs=ESTIMATOR.max_epochs,
        batch_size=ESTIMATOR.batch_size,
        learning_rate=ESTIMATOR.learning_rate,
        weight_decay=ESTIMATOR.weight_decay,
        gradient_clip=ESTIMATOR.gradient_clip,
        ema_decay=ESTIMATOR.ema_decay,
        refine_factor=ESTIMATOR.refine_factor,
        tol=ESTIMATOR.tol,
        early_stopping=ESTIMATOR.early_stopping,
        validation_fraction=ESTIMATOR.validation_fraction,
        n_iter_no_change=ESTIMATOR.n_iter_no_change,
        warm_start=False,
        random_state=None,
        device="cpu",
        verbose=0,
        head=None,
        extractor=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dictionary_size = dictionary_size
        self.top_k = top_k
        self.similarity = similarity
        self.temperature = temperature
        self.learn_temperature = learn_temperature
        self.learn_metric = learn_metric
        self.slot_dropout = slot_dropout
        self.slot_draw = slot_draw
        self.inner_steps = inner_steps
        self.step_size = step_size
        self.step_size_init = step_size_init
        self.adapt = adapt
        self.key_init = key_init
        self.learn_dictionary = learn_dictionary
        self.key_lr_scale = key_lr_scale
        self.leave_one_out = leave_one_out
        self.vanilla_fallback = vanilla_fallback
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.ema_decay = ema_decay
        self.refine_factor = refine_factor
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.head = head
        self.extractor = extractor

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own_init(cls, _MetaNeighborhoodsEstimator.__init__)

    # -- training ---------------------------------------------------------------------------------

    def _fit(self, X, rows: np.ndarray, weights: np.ndarray | None, targets: np.ndarray, n_outputs: int, warm: bool,
             partial: bool = False):
        """Fit on ``rows`` of X (with their ``weights`` and ``targets``), continuing the fitted network if ``warm``
        (and, in a call of ``partial_fit``, the last call's training state: ``training_state.Carried``), on
        the estimator's own seeded stream: the caller's global torch generator and default dtype are left as they
        were. Gradients are on whatever the caller's mode (a fit inside ``torch.no_grad()`` or
        ``torch.inference_mode()`` trains as anywhere else)."""
        device = resolve_device(self.device)
        with (torch_globals(rng_devices=[device] if device.type == "cuda" else []), torch.inference_mode(False),
              torch.enable_grad()):
            self._train(X, rows, weights, targets, n_outputs, device, warm, partial)
        return self

    def _train(self, X, rows, weights, targets, n_outputs: int, device: torch.device, warm: bool,
               partial: bool) -> None:
        """Train on ``rows`` of X, a share of them held out for early stopping; with ``vanilla_fallback``, train the
        same network without neighbours on the same rows too, and keep whichever validates better. A ``warm`` fit
        continues the network kept (``selected_``) alone, on the columns' scales it learnt on."""
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train, valid = early_stopping_split(len(rows), self.validation_fraction if self.early_stopping else 0.0, rng,
                                            targets if self._task == "classification" else None)
        if not warm:
            self.x_mean_, self.x_scale_ = standardiser(X, weights, rows)
        per_row = [torch.as_tensor(targets)]  # what goes with each row into batches and losses: target (and weight)
        if weights is not None:
            per_row.append(torch.as_tensor(weights, dtype=torch.float32))
        X_train = torch.from_numpy(standardised_rows(X, rows[train], self.x_mean_, self.x_scale_))
        data = _Rows(X, rows, train, valid, X_train, per_row, n_outputs, seed, warm)
        carried = Carried(getattr(self, "_carried", {}) if warm else {}) if partial else None
        if warm:  # the network kept, alone (a rival from scratch would not compete on equal terms): vanilla or not
            fits = {self.selected_: self._train_network(data, self._kept_size(), device, carried)}
        else:
            fits = {persistence.WITH_NEIGHBOURS: self._train_network(data, self.dictionary_size, device, carried)}
            if fits[persistence.WITH_NEIGHBOURS][0]["dictionary_size"] == 0:
                fits = {persistence.VANILLA: fits.pop(persistence.WITH_NEIGHBOURS)}
            elif self.vanilla_fallback and valid is not None:
                fits[persistence.VANILLA] = self._train_network(data, 0, device)
        self.validation_losses_ = {} if valid is None else {name: fit[2].best_loss for name, fit in fits.items()}
        self.selected_ = min(fits, key=lambda name: fits[name][2].best_loss)  # a tie keeps the neighbours
        if len(fits) > 1:
            report(f"{type(self).__name__}: kept the {self.selected_.replace('_', '-')} network (lower validation "
                   "loss)", self.verbose > 0)
        self.network_, self.model_, run = fits[self.selected_]
        phases = [run]
        if self.refine_factor is not None and valid is not None:  # the second phase, as a warm fit would go on
            self.network_, self.model_, then = self._train_network(data._replace(warm=True), self._kept_size(), device,
                                                                   rate=self.learning_rate * self.refine_factor)
            phases, run = [run, then], run.followed_by(then)
        self.n_iter_, self.best_epoch_, self.best_loss_ = len(run.losses), run.best_epoch, run.best_loss
        self.loss_curve_, self.validation_loss_curve_ = run.losses, None if valid is None else run.measured
        warn_if_cut_short(self, phases, valid is not None)
        self._carried = carried.after if partial else {}  # what the next call of partial_fit goes on from

    def _kept_size(self) -> int:
        """The ``dictionary_size`` that continues the fitted network: 0 where the fallback kept the vanilla one."""
        return 0 if self.network_["dictionary_size"] == 0 else self.dictionary_size

    def _train_network(self, data: _Rows, dictionary_size: int, device: torch.device, carried: Carried | None = None,
                       rate: float | None = None):
        """(network_, model, run) of one network trained on ``data`` (at learning rate ``rate``, else the estimator's;
        from the training state ``carried``, if any): every draw is seeded from ``data.seed``, so the vanilla network
        trained here equals the one ``dictionary_size=0`` fits."""
        torch.manual_seed(data.seed)
        extractor, key_features = build_extractor(self.extractor, data.X.shape[1])
        n_train, targets = len(data.train), data.per_row[0][data.train]
        network = network_description(self, data.X.shape[1], data.n_outputs, self.network_["dictionary_size"] if
                                      data.warm else n_train, key_features, dictionary_size)  # warm: as at fit
        model = build_network(self, **network, extractor=extractor, key_features=key_features)
        inputs = [data.X_train]
        if data.warm:
            persistence.continue_fitted(model, self.model_)
        elif model.dictionary is not None and self.key_init == "samples":  # never a row of weight 0: not in rows
            own_slot = model.dictionary.init_from_samples(data.X_train, targets, torch.Generator().manual_seed(
                data.seed), features=model.features)
            if self.leave_one_out:
                inputs.append(own_slot)
        model.to(device)
        valid, seen = data.valid, {}  # seen: the last validation loss, which verbose shows

        def validation_loss() -> float:
            seen["validation"] = model.loss(self._forward(data.X, data.rows[valid], model),
                                            *(t[valid] for t in data.per_row)).item()
            return seen["validation"]

        batches = TensorBatches(*inputs, *(t[data.train] for t in data.per_row), batch_size=int(self.batch_size),
                                seed=data.seed, inputs=len(inputs))
        label = type(self).__name__ + (" (vanilla fallback)" if dictionary_size == 0 < self.dictionary_size else "") + (
            "" if rate is None else " (second phase)")
        progress = Progress(label, self.verbose > 0, lambda: {name: f"{loss:.4f}" for name, loss in seen.items()},
                            lines=self.verbose > 1)
        try:
            run = fit_early_stopping(
                model, batches, epochs=int(self.max_epochs), patience=int(self.n_iter_no_change), tol=self.tol,
                validation_loss=None if valid is None else validation_loss, device=device, average=self.ema_decay,
                optimizer=OptimizerSpec(self.learning_rate if rate is None else rate, self.weight_decay,
                                        grad_clip=self.gradient_clip), callbacks={"progress": progress},
                warm=data.warm, carried=carried)
        except FloatingPointError as error:  # which of the fit's networks: with neighbours, the fallback, a phase
            raise FloatingPointError(f"{label}: {error}") from None
        report(f"{label}: {len(run.losses)} epochs; best {'validation' if valid is not None else 'training'} loss "
               f"{run.best_loss:.4f} at epoch {run.best_epoch}", self.verbose > 0)  # what the bar leaves behind
        return network, model.eval(), run

    @torch.no_grad()
    def _forward(self, X, rows: np.ndarray | None = None, model: nn.Module | None = None) -> torch.Tensor:
        """Outputs of ``model`` (default ``model_``) for raw rows (all, or ``rows``), one bounded block at a time, on
        the network's device and in its dtype (a user may move it, or make it float64)."""
        model = (self.model_ if model is None else model).eval()
        parameter, mean, scale = next(model.parameters()), self.x_mean_, self.x_scale_
        size = prediction_rows(model)
        with torch_globals():
            return torch.from_numpy(in_blocks(lambda i, block: model(torch.from_numpy(standardise(
                block, mean, scale, i)).to(parameter.device, parameter.dtype)).cpu(), X, rows, size))

    def _raw_predict(self, X, answer=lambda out: out) -> torch.Tensor:
        """``answer`` of the network's outputs for ``X`` (float64): never a NaN or an inf, nor a default class."""
        check_is_fitted(self, "model_")
        X = validate_data(self, numeric_columns(X), reset=False, dtype=(np.float64, np.float32), accept_sparse="csr")
        out = answer(self._forward(X).double())
        if not torch.isfinite(out).all():
            rows = torch.nonzero(~torch.isfinite(out).all(dim=1)).flatten()[:5].tolist()
            dtype, at = str(next(self.model_.parameters()).dtype)[6:], farthest(X, rows[0], self.x_mean_, self.x_scale_)
            raise ValueError(f"the answers for rows {rows} are not finite (NaN, or beyond the network's {dtype} or, "
                             f"rescaled, float64): refusing to answer{at}")
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.sparse = True
        return tags

    # -- persistence and deployment ----------------------------------------------------------------

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(persistence.unpickled(type(self), state))

    def __getstate__(self) -> dict:
        return persistence.pickled(dict(super().__getstate__()))  # Python's own is the instance's __dict__: copied

    @doc(method_docs.SAVE)
    def save(self, path) -> Path:
        check_is_fitted(self, "model_")
        return persistence.save(self, path)

    @classmethod
    @doc(method_docs.LOAD)
    def load(cls, path):
        return persistence.load(cls, path)

    @doc(method_docs.EXPORT_ONNX)
    def export_onnx(self, path) -> Path:
        check_is_fitted(self, "model_")
        return export.export_estimator(self, self._deployed_output(), path)


class MetaNeighborhoodsRegressor(RegressorMixin, _MetaNeighborhoodsEstimator):
    __doc__ = docs.REGRESSOR
    _task = "regression"
    _FITTED = frozenset({*FITTED, "y_mean_", "y_scale_", "_y_ndim"})

    @doc(method_docs.REGRESSOR_PARTIAL_FIT)
    def partial_fit(self, X, y, sample_weight=None):
        return incremental.one_epoch(self, lambda: self._fit_targets(X, y, sample_weight, partial=True))

    @doc(method_docs.FIT.format(what="", shape=" or (n_samples, n_outputs)", target="Numeric targets."))
    def fit(self, X, y, sample_weight=None):
        return self._fit_targets(X, y, sample_weight)

    @unchanged_if_raised
    def _fit_targets(self, X, y, sample_weight, partial: bool = False):
        """``fit``, or a call of ``partial_fit``."""
        warm = warm_fit(self)
        X, y = validate_data(self, numeric_columns(X), y, accept_sparse="csr", dtype=np.float64, y_numeric=True,
                             multi_output=True, reset=not warm)
        if y.dtype.kind not in "biuf":  # y_numeric converts object arrays only; strings would fail inside numpy
            raise ValueError(f"the target y must be numeric for regression, got dtype {y.dtype}; "
                             "use MetaNeighborhoodsClassifier for labels")
        rows, weights = training_rows(sample_weight, X)
        y2 = y.reshape(len(y), -1)[rows]
        if warm:
            same_as_fitted("outputs", self.network_["n_outputs"], y2.shape[1])
        else:  # a warm start keeps the targets' scale its network learnt on
            self.y_mean_, self.y_scale_ = standardiser(y2, weights, target=True)
        self._y_ndim = y.ndim
        return self._fit(X, rows, weights, ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32), y2.shape[1],
                         warm, partial)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @doc(method_docs.REGRESSOR_PREDICT)
    def predict(self, X) -> np.ndarray:
        out = self._raw_predict(X, lambda out: out * torch.tensor(self.y_scale_) + torch.tensor(self.y_mean_)).numpy()
        return out.ravel() if self._y_ndim == 1 else out

    @doc(method_docs.REGRESSOR_SCORE)
    def score(self, X, y, sample_weight=None) -> float:
        return super().score(X, y, sample_weight=sample_weight)

    def _deployed_output(self) -> nn.Module:
        return export.Rescale(self.y_mean_, self.y_scale_, flat=self._y_ndim == 1)


class MetaNeighborhoodsClassifier(ClassifierMixin, _MetaNeighborhoodsEstimator):
    __doc__ = docs.CLASSIFIER
    _task = "classification"
    _FITTED = frozenset({*FITTED, "classes_"})

    @doc(method_docs.FIT.format(what=" (a softmax over the classes)", shape="", target="Class labels (at least two)."))
    def fit(self, X, y, sample_weight=None):
        return self._fit_labels(X, y, sample_weight)

    @doc(method_docs.CLASSIFIER_PARTIAL_FIT)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        return incremental.one_epoch(self, lambda: self._fit_labels(X, y, sample_weight, classes, partial=True))

    @unchanged_if_raised
    def _fit_labels(self, X, y, sample_weight, classes=None, partial: bool = False):
        """``fit``, or a call of ``partial_fit`` (whose classes are given, not those of its rows)."""
        warm = warm_fit(self)
        X, y = validate_data(self, numeric_columns(X), y, accept_sparse="csr", dtype=np.float64, reset=not warm)
        check_labels(y)
        rows, weights = training_rows(sample_weight, X)
        self.classes_ = incremental.known_classes(self, y[rows], classes) if partial else fit_classes(
            self, y[rows], warm, weights is not None)  # those of the rows learnt from: a zero weight drops a row
        labels = LabelEncoder().fit(self.classes_).transform(y[rows]).astype(np.int64)
        return self._fit(X, rows, weights, labels, len(self.classes_), warm, partial)

    @doc(method_docs.PREDICT_PROBA)
    def predict_proba(self, X) -> np.ndarray:
        return self._raw_predict(X).softmax(dim=1).numpy()  # in float64: rows sum to 1 at its precision

    @doc(method_docs.PREDICT_LOG_PROBA)
    def predict_log_proba(self, X) -> np.ndarray:
        return self._raw_predict(X).log_softmax(dim=1).numpy()

    def _deployed_output(self) -> nn.Module:
        return nn.Softmax(dim=1)

    @doc(method_docs.CLASSIFIER_PREDICT)
    def predict(self, X) -> np.ndarray:
        probabilities = self.predict_proba(X)  # checks fitting first, so an unfitted model says so
        return self.classes_[probabilities.argmax(axis=1)]

    @doc(method_docs.CLASSIFIER_SCORE)
    def score(self, X, y, sample_weight=None) -> float:
        return super().score(X, y, sample_weight=sample_weight)
