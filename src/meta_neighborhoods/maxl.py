"""MAXL, the meta-auxiliary-learning baseline of Table 1 (Liu, Davison, Johns, "Self-Supervised Generalisation with
Meta Auxiliary Learning", NeurIPS 2019; their code: github.com/lorenmt/maxl).

Two networks. The *multi-task network* is the vanilla one (backbone + cosine head over the C classes) with a second,
auxiliary cosine head over C * psi auxiliary classes, psi per class. The *label generator* (its own backbone of the
same kind, then Linear-ReLU-Linear) gives each training image a distribution over the auxiliary classes: a softmax
masked to the psi sub-classes of the image's true class. The multi-task network trains on primary + auxiliary
cross-entropy against the generated labels; the generator trains so that one virtual SGD step of the multi-task
network on those labels lowers its primary loss (a second-order meta-gradient), minus an entropy bonus on the batch's
mean label that keeps it from sending every image of a class to one sub-class. Only the primary network predicts:
``forward`` gives the primary logits, so validation, test and export see the vanilla network (checkpoints hold both).
Under torchrun the virtual step and the mean label are the global batch's (averaged over the processes, through the
backward pass too), so that, BatchNorm aside, several processes train as one.

As in the authors' code: the masked softmax; the generator's architecture (the multi-task network's backbone and a
two-layer classifier); primary and auxiliary losses summed with weight 1; the virtual step
``theta+ = theta - alpha * grad(L_primary + L_auxiliary)`` on every multi-task parameter with alpha = 0.01 (their
multi-task learning rate), BatchNorm on batch statistics there without touching the running ones; the entropy weight
0.2 on ``sum(mean_label * log(mean_label))``; psi = 5 by default (their ``psi = [5] * 20``); the first-order
alternative by central finite differences (DARTS), eps = 0.01 / |grad L_primary(theta+)|, as their
``model_vgg_maxl_firstorder.py``. Where we differ, so that only the method differs from the other rows of Table 1:

* both heads are cosine classifiers trained with cross-entropy (soft targets for the auxiliary one), not
  MLP + softmax trained with focal loss (gamma 2);
* one AdamW over both networks with the shared protocol's learning rate, weight decay and schedule, the generator
  at a tenth of the learning rate as theirs (theirs: SGD 0.01 for the multi-task network, SGD 1e-3 with weight decay
  5e-4 for the generator, both halved every 50 epochs), and alpha stays 0.01 where theirs halves with the schedule;
* the update is simultaneous, not alternating: every step computes both networks' gradients on the same batch at
  the same parameters and steps both (``loss``), where theirs makes a whole pass updating the multi-task network,
  then a pass updating the generator;
* the first-order virtual step is plain SGD as the second-order one (theirs adds the optimiser's momentum and weight
  decay), and it keeps the entropy term (theirs overwrites the generator's gradient with the finite difference);
* the masked softmax gives exactly zero outside the true class's sub-classes (theirs 1e-8 times the exponential).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import distributed
from .config import MNConfig
from .heads import CosineHead, decayed_parameter_names
from .model import MetaNeighborhoods
from .similarity import masked_softmax
from .validation import check_int

STEP_SIZE = 0.01  # alpha of the virtual step: their multi-task learning rate
ENTROPY_WEIGHT = 0.2
GENERATOR_LR_SCALE = 0.1  # their generator's learning rate over the multi-task network's (1e-3 / 1e-2)
FINITE_DIFFERENCE = 0.01  # first order: eps * |d| of the central difference
MULTITASK = ("extractor", "head", "auxiliary")  # the multi-task network's parts; the generator is the rest


def auxiliary_labels(logits: torch.Tensor, target: torch.Tensor, psi: int) -> torch.Tensor:
    """Softmax over the psi auxiliary classes ``[c * psi, (c + 1) * psi)`` of each row's class c; zero elsewhere."""
    return masked_softmax(logits, torch.arange(logits.shape[1], device=logits.device) // psi == target[:, None])


def label_entropy(labels: torch.Tensor) -> torch.Tensor:
    """Entropy of the batch's mean label (every process's slice of it under torchrun): high when the batch spreads
    over the auxiliary classes, whatever the sharpness of each image's label (log of the class count at most)."""
    (mean,) = distributed.average([labels.mean(dim=0)])
    return -(mean * mean.clamp_min(torch.finfo(mean.dtype).tiny).log()).sum()  # 0 log 0 = 0, with a finite gradient


class LabelGenerator(nn.Module):
    """Backbone + Linear-ReLU-Linear over the C * psi auxiliary classes, masked to each image's class."""

    def __init__(self, extractor: nn.Module, num_classes: int, psi: int):
        super().__init__()
        width = extractor.out_features
        self.extractor, self.psi = extractor, psi
        self.classifier = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, num_classes * psi))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return auxiliary_labels(self.classifier(self.extractor(x)), target, self.psi)


class _Batch(NamedTuple):
    inputs: torch.Tensor
    features: torch.Tensor


class _Held:
    """The training-mode forward's batch, held for ``loss``: never copied or pickled with the module, whose copy is
    of its weights (a batch held with its graph had made ``copy.deepcopy`` fail)."""

    def __init__(self):
        self.batch: _Batch | None = None

    def __reduce__(self):
        return _Held, ()


class MetaAuxiliaryLearning(MetaNeighborhoods):
    """The vanilla network (``MetaNeighborhoods`` without a dictionary) trained with meta-learned auxiliary labels.

    Fits ``training.fit`` as it is: the training-mode ``forward`` keeps its images and features for ``loss``, whose
    value is the multi-task loss and whose gradient also carries the generator's (``loss``). ``generator_extractor``
    is a second backbone like ``extractor``; ``first_order`` takes the finite-difference meta-gradient.
    """

    def __init__(self, extractor: nn.Module, generator_extractor: nn.Module, num_classes: int, psi: int, *,
                 step_size: float = STEP_SIZE, entropy_weight: float = ENTROPY_WEIGHT, first_order: bool = False):
        check_int("psi", psi, minimum=2)
        width = extractor.out_features
        super().__init__(CosineHead(width, num_classes), MNConfig(task="classification", dictionary_size=0),
                         extractor=extractor)
        self.auxiliary = CosineHead(width, num_classes * psi)
        self.generator = LabelGenerator(generator_extractor, num_classes, psi)
        self.step_size, self.entropy_weight, self.first_order = step_size, entropy_weight, first_order
        self._held = _Held()

    def extra_repr(self) -> str:
        return f"psi={self.generator.psi}, step_size={self.step_size}, first_order={self.first_order}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        if self.training and torch.is_grad_enabled():
            self._held.batch = _Batch(x, z)
        return self.head(z)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The multi-task loss (generated labels detached: it trains the multi-task network only), plus a term worth
        exactly zero whose gradient is the generator's, computed here, so one backward gives each network its own.
        Rows are not weighted (``weight``, which ``training.fit`` passes for weighted rows, is refused)."""
        if weight is not None:
            raise ValueError("MetaAuxiliaryLearning takes no row weights: its generator and virtual step weigh every "
                             "image alike")
        batch, self._held.batch = self._held.batch, None
        if batch is None or batch.inputs.shape[0] != prediction.shape[0]:
            raise RuntimeError("MetaAuxiliaryLearning.loss needs the training-mode forward of the same batch just "
                               "before: the generator and the virtual step see its images")
        labels = self.generator(batch.inputs, target)
        multitask = _multitask_loss(prediction, self.auxiliary(batch.features), target, labels.detach())
        generator = list(self.generator.parameters())
        gradients = torch.autograd.grad(self.generator_objective(batch.inputs, target, labels), generator)
        carried = sum((p * g).sum() for p, g in zip(generator, gradients))
        return multitask + (carried - carried.detach())

    def generator_objective(self, x: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What the generator minimises, given its ``labels`` for (x, target): the primary loss after the virtual step
        (first order: a surrogate with the finite-difference gradient) minus the entropy weight times the entropy."""
        meta = self._finite_difference(x, target, labels) if self.first_order else self._lookahead(x, target, labels)
        return meta - self.entropy_weight * label_entropy(labels)

    def _lookahead(self, x, target, labels) -> torch.Tensor:
        """The primary loss at theta+ = theta - alpha grad L_mt(theta, labels), differentiable in the labels
        (second order); theta is a detached copy, so the multi-task network gets nothing from here."""
        theta, buffers = self._copies()
        gradients = distributed.average(torch.autograd.grad(
            _multitask_loss(*self._multitask({**theta, **buffers}, x), target, labels), list(theta.values()),
            create_graph=True))
        stepped = {name: t - self.step_size * g for (name, t), g in zip(theta.items(), gradients)}
        return F.cross_entropy(self._multitask({**stepped, **buffers}, x)[0], target)

    def _finite_difference(self, x, target, labels) -> torch.Tensor:
        """A surrogate whose gradient in the labels is the first-order meta-gradient
        -alpha (grad L_mt(theta + eps d) - grad L_mt(theta - eps d)) / 2 eps, d = grad L_primary(theta+): the central
        difference of a Hessian-vector product. Only the auxiliary loss depends on the labels."""
        theta, buffers = self._copies()
        gradients = distributed.average(torch.autograd.grad(
            _multitask_loss(*self._multitask({**theta, **buffers}, x), target, labels.detach()), list(theta.values())))
        stepped = {name: (t - self.step_size * g).detach().requires_grad_()
                   for (name, t), g in zip(theta.items(), gradients)}
        d = distributed.average(torch.autograd.grad(
            F.cross_entropy(self._multitask({**stepped, **buffers}, x)[0], target), list(stepped.values()),
            allow_unused=True, materialize_grads=True))  # auxiliary parameters: 0
        eps = FINITE_DIFFERENCE / torch.cat([g.flatten() for g in d]).norm().clamp_min(1e-12)
        with torch.no_grad():
            plus, minus = ({name: t + sign * eps * g for (name, t), g in zip(theta.items(), d)} for sign in (1, -1))
            change = (self._multitask({**plus, **buffers}, x)[1].log_softmax(dim=1)
                      - self._multitask({**minus, **buffers}, x)[1].log_softmax(dim=1))
        return self.step_size / (2 * eps) * (labels * change).sum(dim=1).mean()

    def _copies(self) -> tuple[dict, dict]:
        """Detached leaf copies of the multi-task parameters, and copies of its buffers for the BatchNorms of the
        virtual steps to update in place of the network's own running statistics."""
        theta = {name: p.detach().requires_grad_() for name, p in self.named_parameters()
                 if name.split(".")[0] in MULTITASK}
        return theta, {f"extractor.{name}": b.clone() for name, b in self.extractor.named_buffers()}

    def _multitask(self, tensors: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(primary, auxiliary) logits of the multi-task network run with ``tensors``, named as in this module."""
        z = functional_call(self.extractor, _within("extractor", tensors), (x,))
        return (functional_call(self.head, _within("head", tensors), (z,)),
                functional_call(self.auxiliary, _within("auxiliary", tensors), (z,)))

    def parameter_groups(self, weight_decay: float, learning_rate: float) -> list[dict]:
        """AdamW groups over both networks by the vanilla rule: decay on weight matrices and kernels, not on the
        cosine heads (``heads.decayed_parameter_names``); the generator at a tenth of the learning rate."""
        decayed = set(decayed_parameter_names(self))
        trainable = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        return [{"params": [p for name, p in trainable if (name in decayed) == decay and _is_generator(name) == gen],
                 "weight_decay": weight_decay if decay else 0.0,
                 "lr": learning_rate * (GENERATOR_LR_SCALE if gen else 1.0)}
                for gen in (False, True) for decay in (True, False)]


def _multitask_loss(primary: torch.Tensor, auxiliary: torch.Tensor, target: torch.Tensor,
                    labels: torch.Tensor) -> torch.Tensor:
    """Primary cross-entropy plus the auxiliary head's cross-entropy against the generated (soft) labels."""
    return F.cross_entropy(primary, target) + F.cross_entropy(auxiliary, labels)


def _is_generator(name: str) -> bool:
    return name.split(".")[0] not in MULTITASK


def _within(part: str, tensors: dict) -> dict:
    """The entries of ``tensors`` under submodule ``part``, named as inside it."""
    prefix = part + "."
    return {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}
