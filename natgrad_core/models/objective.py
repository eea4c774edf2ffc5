"""The training objective: a model bound to data, with the L2 convention and oracle counts.

Objective (the one scaling convention of natgrad, stated once)
----------------------------------------------------------------
    L(θ) = (1/N) Σₙ nll(zₙ(θ), yₙ)  +  α ‖W‖² / (2 N_total)

where the penalty covers weights only (intercepts are unpenalized) and ``N_total`` is the
size of the full training set, also when ``L`` is evaluated on a mini-batch (so a batch
loss is an unbiased estimate of the full loss). This is scikit-learn's ``MLPClassifier``
convention; dividing ``LogisticRegression``'s objective ``C Σ loss + ‖w‖²/2`` by ``C·N``
shows that ``alpha = 1 / C`` gives the same optimum. The penalty's Hessian is the
diagonal matrix ``l2 · mask`` with ``l2 = α / N_total``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._typing import Array
from .._validation import check_finite_array, check_nonnegative
from .mlp import MLP, mean_nll

__all__ = ["Evaluation", "Objective", "OracleCounts"]


@dataclass
class OracleCounts:
    """How much work an optimizer asked for, in the units benchmarks compare.

    n_loss : loss-only evaluations (forward passes, e.g. in a line search).
    n_grad : loss-and-gradient evaluations (forward + backward).
    n_fvp : Fisher-vector products (one forward-mode + one backward pass each); quadratic
        forms from forward-mode passes alone count ⌈passes / 2⌉ (``ImplicitFisher.gram``).
    n_cg_iter : conjugate-gradient iterations.
    n_factorizations : dense factorizations (Cholesky, eigendecompositions, K-FAC inverses).
    n_backprop : output-space columns pulled back to the parameters over the batch while
        building a curvature (exact/dense: n_outputs per build; diagonal, K-FAC and EKFAC
        statistics and CG preconditioners: one per column of √Λ, ``mc_samples`` for "mc",
        1 for "empirical"). Each costs the propagation part of one backward pass
        (``MLP.pass_flops(n).propagation``; 0 for logistic regression).
    n_flops : floating-point operations of the curvature's dense linear algebra, counted
        where it runs: the contractions of the pulled-back columns with the layer inputs,
        Gram and syrk builds, factorizations (Cholesky n³/3, eigendecompositions 9n³) and
        the solves that apply them (see :mod:`natgrad_core.curvature._linalg`).

    ``n_grad``, ``n_loss`` and ``n_fvp`` are the first-order calls; ``n_backprop`` and
    ``n_flops`` are the curvature work those calls leave out.
    """

    n_loss: int = 0
    n_grad: int = 0
    n_fvp: int = 0
    n_cg_iter: int = 0
    n_factorizations: int = 0
    n_backprop: int = 0
    n_flops: int = 0

    def as_dict(self) -> dict:
        # not dataclasses.asdict: it deep-copies, and the driver asks once per history row
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _same(key: Array | None, theta) -> bool:
    """Whether the memo key ``key`` (an array, or None for no memo) equals ``theta`` entry
    by entry: ``np.array_equal`` without its conversions, asked several times a step."""
    if key is None:
        return False
    if key is theta:
        return True
    theta = np.asarray(theta)
    return key.shape == theta.shape and bool((key == theta).all())


class Evaluation(NamedTuple):
    """The memo of the last loss-and-gradient evaluation (see :class:`Objective`).

    theta : where it was evaluated;  loss, grad : L(θ) and ∇L(θ) (the memo's own copies)
    forward_seconds, backward_seconds : wall time of its forward pass and of the rest
        (0 for a part found already computed), measured when it ran.
    """

    theta: Array
    loss: float
    grad: Array
    forward_seconds: float
    backward_seconds: float


class Objective:
    """A model bound to training data ``(X, y)`` with L2 strength ``alpha``.

    Parameters
    ----------
    model : MLP
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or (n_samples, n_targets)
        Class labels 0..K-1 (softmax), {0, 1} (sigmoid), or real targets (Gaussian).
    alpha : float, default 0
        L2 strength, see the module docstring.
    n_total : int, optional
        Size of the full training set when ``X`` is a mini-batch (set by :meth:`batch`).

    Memo and charged time
    ---------------------
    The last forward pass and the last loss-and-gradient evaluation (an :class:`Evaluation`)
    are memoized: a second call at the same θ returns them without recomputing. An
    evaluation made with ``count=False`` (outside an optimizer, e.g. the driver's history)
    is work the optimizer did not pay for; when a counted call later consumes it (a counted
    ``loss_and_grad`` at that θ: forward and backward; a counted ``loss`` or ``forward``:
    the forward pass), it is counted as usual and its measured seconds are added to
    ``charged_seconds``, which :meth:`take_charged_seconds` hands to the caller's clock —
    so an optimizer's time is what it would have spent without the outside evaluation.
    """

    def __init__(self, model: MLP, X, y, alpha: float = 0.0, *, n_total=None, counts=None):
        if not isinstance(model, MLP):
            raise TypeError(f"model must be an MLP or LogisticModel, got {type(model).__name__}.")
        self.model = model
        self._set_design(model.augment(model.check_X(X)))
        y = check_finite_array(y, "y")
        if y.shape[0] != self.X.shape[0]:
            raise ValueError(
                f"Shape mismatch: X has {self.X.shape[0]} samples but y has {y.shape[0]}."
            )
        if self.X.shape[0] == 0:
            raise ValueError("X and y must contain at least one sample, got 0.")
        self.y = y
        self.Y = model.head.encode(y, model.n_targets, dtype=model.dtype)
        self.alpha = check_nonnegative(alpha, "alpha")
        self.n_total = self.X.shape[0] if n_total is None else int(n_total)
        self.counts = OracleCounts() if counts is None else counts
        self._mask = model.weight_mask()
        self.charged_seconds = 0.0
        self.clear_cache()

    @classmethod
    def _from_encoded(cls, parent: Objective, idx) -> Objective:
        obj = cls.__new__(cls)
        obj.model = parent.model
        obj._set_design(parent._X_bar[idx])
        obj.y = parent.y[idx]
        obj.Y = parent.Y[idx]
        obj.alpha = parent.alpha
        obj.n_total = parent.n_total
        obj.counts = parent.counts
        obj._mask = parent._mask
        obj.charged_seconds = 0.0
        obj.clear_cache()
        return obj

    def _set_design(self, X_bar: Array) -> None:
        """Keep ``ā_0 = [X, 1]`` (from ``MLP.augment``) as the one copy of the data: every
        forward pass reads it in place, and ``X`` is a view of its first n_features columns.
        Both are read-only, since every forward cache shares them."""
        self._X_bar = X_bar.view()
        self._X_bar.flags.writeable = False
        self.X = self._X_bar[:, : self.model.n_features]

    def batch(self, idx) -> Objective:
        """The objective on rows ``idx``, sharing the counts and the full-data L2 scale."""
        return self._from_encoded(self, idx)

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_params(self) -> int:
        return self.model.n_params

    @property
    def l2(self) -> float:
        """Diagonal of the penalty Hessian on weights: ``alpha / n_total``."""
        return self.alpha / self.n_total

    @property
    def weight_mask(self) -> Array:
        return self._mask

    @functools.cached_property
    def _forward_share(self) -> float:
        """The forward pass's share of a gradient evaluation's flops on this data."""
        flops = self.model.pass_flops(self.n_samples)
        return flops.forward / flops.gradient

    def clear_cache(self) -> None:
        """Forget the memoized forward pass and evaluation (the next one recomputes both)."""
        self._cached_theta = None
        self._cached_forward = None
        self._memo: Evaluation | None = None
        # seconds of uncounted work at _owed_theta not yet charged: [forward, backward]
        self._owed_theta, self._owed = None, [0.0, 0.0]

    def evaluation_at(self, theta: Array) -> Evaluation | None:
        """The memoized :class:`Evaluation` if the last one was at ``theta``, else None;
        free, neither counted nor charged."""
        memo = self._memo
        return memo if memo is not None and _same(memo.theta, theta) else None

    def take_charged_seconds(self) -> float:
        """Seconds charged since the last call (see the class doc), and reset them."""
        seconds, self.charged_seconds = self.charged_seconds, 0.0
        return seconds

    def _owe(self, theta: Array, part: int, seconds: float) -> None:
        """Record ``seconds`` of uncounted work at ``theta`` (part 0: forward, 1: backward)."""
        if not _same(self._owed_theta, theta):
            self._owed_theta, self._owed = theta, [0.0, 0.0]
        self._owed[part] = seconds

    def _pay(self, theta: Array, parts, charge: bool = True) -> None:
        """Settle the owed ``parts`` at ``theta``: charge them (a counted call reuses the
        work) or, with ``charge=False``, forget them (a counted call recomputed it)."""
        if _same(self._owed_theta, theta):
            for part in parts:
                if charge:
                    self.charged_seconds += self._owed[part]
                self._owed[part] = 0.0

    def _has_forward(self, theta: Array) -> bool:
        return _same(self._cached_theta, theta)

    def _forward(self, theta: Array, count: bool):
        """(forward cache, seconds spent computing it now: 0 when memoized)."""
        if self._has_forward(theta):
            if count:
                self._pay(self._cached_theta, (0,))  # the key itself: an identity check
            return self._cached_forward, 0.0
        start = time.perf_counter()
        self._cached_forward = self.model.forward(theta, self._X_bar, augmented=True)
        self._cached_theta = np.array(theta, copy=True)
        seconds = time.perf_counter() - start
        if count:
            self._pay(theta, (0,), charge=False)
        else:
            self._owe(self._cached_theta, 0, seconds)
        return self._cached_forward, seconds

    def forward(self, theta: Array):
        """Forward pass at ``theta``, memoized for the last ``theta`` seen (a counted use:
        charges an uncounted forward pass it reuses)."""
        return self._forward(theta, count=True)[0]

    def _penalty(self, theta, grad: bool = True):
        """(l2/2 ‖mask·θ‖², its gradient l2·mask·θ, or None without ``grad``)."""
        w = theta * self._mask
        return 0.5 * self.l2 * float(w @ w), (self.l2 * w if grad else None)

    def loss(self, theta: Array, count: bool = True, prefetch_grad: bool = False) -> float:
        """L(θ); counted as one loss evaluation unless ``count=False``.

        ``prefetch_grad``: for a one-layer (generalized linear) model whose forward pass at
        θ is not known yet, run the fused pass of :meth:`loss_and_grad` instead and keep
        ∇L(θ) in the memo, for a caller that usually needs it next (a trial point that is
        usually accepted). That pass reads X once, as the forward pass alone does, so on
        data that do not fit in cache it costs about the same; the gradient is counted
        when a :meth:`loss_and_grad` at θ asks for it.
        """
        if count:
            self.counts.n_loss += 1
        memo = self.evaluation_at(theta)
        if memo is not None:
            if count:
                self._pay(memo.theta, (0,))
            return memo.loss
        if prefetch_grad and len(self.model.layers) == 1 and not self._has_forward(theta):
            return self._evaluate(theta, count)[0]
        z = self._forward(theta, count)[0].outputs
        return mean_nll(self.model.head.nll(z, self.Y)) + self._penalty(theta, grad=False)[0]

    def loss_and_grad(self, theta: Array, count: bool = True) -> tuple[float, Array]:
        """(L(θ), ∇L(θ)); counted as one gradient evaluation unless ``count=False``."""
        if count:
            self.counts.n_grad += 1
        memo = self.evaluation_at(theta)
        if memo is not None:
            if count:
                self._pay(memo.theta, (0, 1))
            return memo.loss, memo.grad.copy()
        return self._evaluate(theta, count)

    def _evaluate(self, theta: Array, count: bool) -> tuple[float, Array]:
        """Compute (L(θ), ∇L(θ)) and memoize it (the memo missed); ``count`` as the caller's."""
        if not self._has_forward(theta) and len(self.model.layers) == 1:
            # a linear model's fused pass (MLP.loss_and_vjp) reads X once for forward and
            # backward, so they are timed together and split in proportion to their flops
            start = time.perf_counter()
            cache, loss, grad = self._loss_and_grad(theta, None)
            seconds = time.perf_counter() - start
            self._cached_forward, self._cached_theta = cache, np.array(theta, copy=True)
            forward_seconds = seconds * self._forward_share
            backward_seconds = seconds - forward_seconds
            if count:
                self._pay(self._cached_theta, (0,), charge=False)
            else:
                self._owe(self._cached_theta, 0, forward_seconds)
        else:
            cache, forward_seconds = self._forward(theta, count)
            start = time.perf_counter()
            cache, loss, grad = self._loss_and_grad(theta, cache)
            backward_seconds = time.perf_counter() - start
        theta = self._cached_theta
        self._memo = Evaluation(theta, loss, grad.copy(), forward_seconds, backward_seconds)
        if count:
            self._pay(theta, (1,), charge=False)
        else:
            self._owe(theta, 1, backward_seconds)
        return loss, grad

    def _loss_and_grad(self, theta: Array, cache):
        """(forward cache, L(θ), ∇L(θ)) from ``MLP.loss_and_vjp``, reusing ``cache``."""
        cache, loss, grad = self.model.loss_and_vjp(theta, self._X_bar, self.Y, cache)
        pen, pen_grad = self._penalty(theta)
        grad += pen_grad
        return cache, loss + pen, grad

    def per_example_grads(self, theta: Array) -> Array:
        """∇ nll(zₙ, yₙ) for every sample, shape (n_samples, n_params); no penalty."""
        cache = self.forward(theta)
        U = self.model.head.grad(cache.outputs, self.Y)
        return self.model.per_example_grads(cache, self.model.backward(theta, cache, U))
