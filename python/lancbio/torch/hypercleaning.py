"""Data hyper-cleaning (docs/algorithms.md section 7) in PyTorch, on the data of a
:class:`lancbio.problems.HyperCleaning`:

    g(x, y) = (1/N) sum_i sigmoid(x_i) CE(model_y(a_i), l_i) + reg ||y||^2
    f(x, y) = (1/N_val) sum_j CE(model_y(a_j), l_j)

with model "linear" (the numpy problem's: one C x (p+1) parameter [W | bias], the same
layout as its y, so the two back ends can be compared iterate by iterate) or "mlp" (one
hidden tanh layer). With ``batch``, each loss draws its own mini-batch of that many
samples (the paper's stochastic variant: grad_y f, the Hessian products and the cross term
from separate batches); without, full batches.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["HyperCleaningModel", "MODELS"]

MODELS = ("linear", "mlp")


class HyperCleaningModel:
    """The lower-level model, the sample weights x and the losses of hyper-cleaning.

    Args:
        problem: a lancbio.problems.HyperCleaning (its data, labels and reg).
        model: "linear" or "mlp".
        hidden: width of the MLP's hidden layer.
        batch: mini-batch size of every loss, or None for full batches.
        seed: seed of the MLP's initial weights (drawn small, as its y0) and of the batches.
        dtype: torch.float64 or torch.float32.
    """

    def __init__(self, problem, model: str = "linear", hidden: int = 64, batch: int | None = None, seed: int = 0,
                 dtype=torch.float64):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        self.problem = problem
        self.model = model
        self.reg = problem.reg
        self.batch = batch
        self._generator = torch.Generator().manual_seed(seed)

        def tensor(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

        ones = lambda m: torch.ones(m, 1, dtype=dtype)  # noqa: E731
        self.train = torch.cat([tensor(problem.train_features), ones(problem.dx)], dim=1)
        self.val = torch.cat([tensor(problem.val_features), ones(problem.val_labels.size)], dim=1)
        self.test = torch.cat([tensor(problem.test_features), ones(problem.test_labels.size)], dim=1)
        self.train_labels = torch.as_tensor(problem.train_labels)
        self.val_labels = torch.as_tensor(problem.val_labels)
        self.test_labels = torch.as_tensor(problem.test_labels)
        C, width = problem.num_classes, problem.num_features + 1
        if model == "linear":
            self.params = [torch.zeros(C, width, dtype=dtype, requires_grad=True)]
        else:
            scale = 1.0 / np.sqrt(width)
            first = scale * torch.randn(hidden, width, generator=self._generator, dtype=dtype)
            second = (1.0 / np.sqrt(hidden + 1)) * torch.randn(C, hidden + 1, generator=self._generator, dtype=dtype)
            self.params = [first.requires_grad_(), second.requires_grad_()]
        self.x = torch.zeros(problem.dx, dtype=dtype, requires_grad=True)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The model's logits for augmented features [a, 1] (m x (p+1))."""
        if self.model == "linear":
            return features @ self.params[0].T
        first, second = self.params
        hidden = torch.tanh(features @ first.T)
        return hidden @ second[:, :-1].T + second[:, -1]

    def _rows(self, count: int):
        if self.batch is None or self.batch >= count:
            return None
        return torch.randperm(count, generator=self._generator)[:self.batch]

    def inner_loss(self) -> torch.Tensor:
        rows = self._rows(self.x.numel())
        features, labels, x = self.train, self.train_labels, self.x
        if rows is not None:
            features, labels, x = features[rows], labels[rows], x[rows]
        losses = torch.nn.functional.cross_entropy(self.logits(features), labels, reduction="none")
        penalty = sum((p * p).sum() for p in self.params)
        return (torch.sigmoid(x) * losses).mean() + self.reg * penalty

    def outer_loss(self) -> torch.Tensor:
        rows = self._rows(self.val_labels.numel())
        features, labels = self.val, self.val_labels
        if rows is not None:
            features, labels = features[rows], labels[rows]
        return torch.nn.functional.cross_entropy(self.logits(features), labels)

    def hessian_loss(self):
        """g on its own mini-batch, or None with full batches (then inner_loss serves)."""
        return self.inner_loss() if self.batch is not None else None

    # -- evaluation (full sets, no graph) ------------------------------------------------
    def validation_loss(self) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(self.logits(self.val), self.val_labels))

    def test_accuracy(self) -> float:
        with torch.no_grad():
            return float((self.logits(self.test).argmax(1) == self.test_labels).double().mean())

    def cleaning_report(self) -> dict:
        return self.problem.cleaning_report(self.x.detach().double().numpy())
