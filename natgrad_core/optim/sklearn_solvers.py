"""scikit-learn's solvers on natgrad's objective, as
:class:`~natgrad_core.optim.base.BudgetedSolver` plugins (the ``sklearn-*`` names of
:data:`~natgrad_core.optim.registry.SHIPPED_SOLVERS`).

The objective (:mod:`natgrad_core.models.objective`) is scikit-learn's, so each adapter only
translates the L2 strength and the parameter layout:

``LogisticRegression``   minimizes ``C Σₙ loss + ‖w‖²/2``; divided by ``C·N`` it is
                         natgrad's ``(1/N) Σₙ nll + α‖W‖²/(2N)`` with ``C = 1/α``
                         (``C = inf``, no penalty, when α = 0). Binary problems have one
                         logit (natgrad's sigmoid head, ``coef_`` of shape (1, n_features));
                         K > 2 classes are multinomial (natgrad's softmax head).
``MLPClassifier``        minimizes ``(1/N) Σₙ nll + alpha‖W‖²/(2N)``: the same ``alpha``.
``MLPRegressor``         reports ``(1/(2N·n_outputs)) Σₙ ‖yₙ − zₙ‖² + alpha‖W‖²/(2N)`` as
                         its loss, but its gradient is that of ``(1/N) Σₙ ½‖yₙ − zₙ‖² +
                         alpha‖W‖²/(2N)`` — natgrad's Gaussian objective with the same
                         ``alpha`` (the output error ``z − y`` is not divided by
                         ``n_outputs``; scikit-learn issue #8349). Its stochastic solvers
                         use only the gradient, so they minimize natgrad's objective
                         exactly; its L-BFGS line-searches the reported loss along that
                         gradient, which agree only for one output (:class:`MLPLBFGS`
                         skips more).

On a mini-batch of ``n`` of ``N_total`` samples natgrad's penalty is ``α‖W‖²/(2N_total)``,
so the strength passed on is ``α·n/N_total`` (α itself on the full data).

Parameters: natgrad's block ``W̄_l`` of shape (fan_in + 1, fan_out) is scikit-learn's
``coefs_[l]`` stacked over ``intercepts_[l]`` (``LogisticRegression``: ``coef_.T`` over
``intercept_``).

The curve and the initialization
--------------------------------
Every ``solve`` is one ``fit`` from θ₀ with ``max_iter`` = the budget and
``warm_start=True`` (the driver restarts it for each budget of its geometric grid, see
:class:`~natgrad_core.optim.base.BudgetedSolver`), so every point starts where natgrad's own
runs start. ``LogisticRegression`` reads ``coef_`` / ``intercept_`` as its start when
``warm_start`` is set, also on an unfitted estimator. The MLP estimators have no public way
to take initial weights: a warm-started ``fit`` continues from ``coefs_`` / ``intercepts_``
only after a first fit has built the rest of the fitted state (classes, output activation,
layer count). :class:`SklearnMLP` therefore primes its estimator once per objective with a
one-iteration fit on one row per class (one row for regression), then before every fit
overwrites ``coefs_`` / ``intercepts_`` with copies of θ₀'s blocks. What else carries over
between fits (scikit-learn ≥ 1.6, ``_multilayer_perceptron.py``): the Adam / SGD optimizer
and the shuffling generator are rebuilt by every non-incremental ``fit``; ``n_iter_`` is
reset; ``t_`` (the samples seen, which sets SGD's "invscaling" rate), ``loss_curve_`` and
``best_loss_`` are carried over and are reset here to their first-fit values; the
no-improvement counter is carried over but can never stop a fit, because
``n_iter_no_change`` is the largest 32-bit integer. The priming fit runs inside the first
``solve`` of a curve (the budget-1 point), on a handful of rows: its cost is one call of
scikit-learn's fixed per-fit overhead.

Stopping: ``tol`` is lowered to 1e-10 so that the budget, not scikit-learn's default
tolerance of 1e-4, ends the fits. For ``LogisticRegression`` and the MLP's L-BFGS it is
scikit-learn's own ``tol``, whose meaning differs per solver: the gradient's max-norm
(lbfgs, newton-cg), that and ½ Newton decrement² both (newton-cholesky), the largest change
of a weight relative to the largest weight over an epoch (saga). L-BFGS may still end on
scipy's relative-reduction test, which scikit-learn does not expose (the driver then
reports "stalled"). Adam and SGD have no
stopping rule but the no-improvement one, switched off (``tol=0`` and the largest
``n_iter_no_change``), so they always run the budget. scikit-learn's
``ConvergenceWarning`` (the budget ending a fit) is silenced inside ``solve``.

The data are copied once per objective into a C-contiguous array (``Objective.X`` is a
view), outside the fit that the driver times after the first budget; the copy lives as long
as the solver and is renewed when it is given another objective.

Sources: scikit-learn's user guide, "Logistic regression" (§1.1.11, the objective and the
solvers) and "Neural network models (supervised)" (§1.17, the MLP loss and ``alpha``);
https://scikit-learn.org/stable/modules/linear_model.html#logistic-regression and
https://scikit-learn.org/stable/modules/neural_networks_supervised.html.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor

from .._typing import Array
from .._validation import check_nonnegative, check_positive
from .base import BudgetedSolver, check_growth

__all__ = [
    "LogisticLBFGS",
    "LogisticNewtonCG",
    "LogisticNewtonCholesky",
    "LogisticSAGA",
    "MLPAdam",
    "MLPLBFGS",
    "MLPSGD",
    "SklearnLogisticRegression",
    "SklearnMLP",
    "theta_from_estimator",
]

_NEVER = 2**31 - 1
"""``n_iter_no_change`` that no fit reaches: scikit-learn's no-improvement stop is off."""

_ACTIVATIONS = {
    "tanh": "tanh",
    "relu": "relu",
    "sigmoid": "logistic",
    "logistic": "logistic",
    "identity": "identity",
}
"""natgrad's hidden activations → scikit-learn's (``erf`` has no counterpart)."""


class _Prepared(NamedTuple):
    """The arrays a fit reads, built once per objective.

    key : (X, y, model, alpha, n_total) of the objective they were built from
    X : C-contiguous copy of ``objective.X``;  y : targets as scikit-learn reads them
    alpha : scikit-learn's L2 strength (module docstring)
    estimator : the primed MLP estimator (None for logistic regression)
    """

    key: tuple
    X: Array
    y: Array
    alpha: float
    estimator: object


def _is_for(prepared: _Prepared | None, objective) -> bool:
    if prepared is None:
        return False
    X, y, model, alpha, n_total = prepared.key
    return (
        X is objective.X
        and y is objective.y
        and model is objective.model
        and (alpha, n_total) == (objective.alpha, objective.n_total)
    )


def _key(objective) -> tuple:
    return (objective.X, objective.y, objective.model, objective.alpha, objective.n_total)


def _l2_strength(objective) -> float:
    """α·n/N_total: scikit-learn's penalty is scaled by the samples it sees."""
    return objective.l2 * objective.n_samples


def _class_targets(objective) -> Array:
    """Labels of shape (n_samples,) for softmax and binary sigmoid heads (scikit-learn's
    classes must be exactly 0..K-1 for its outputs to line up with natgrad's), the
    indicator matrix of shape (n_samples, n_targets) for a multi-label sigmoid head."""
    model = objective.model
    y = np.asarray(objective.y)
    if model.n_outputs > 1 and model.head.name == "sigmoid":
        return y
    y = y.reshape(-1)
    present = np.unique(y)
    if not np.array_equal(present, np.arange(model.n_targets)):
        raise ValueError(
            f"scikit-learn's classifiers learn the classes present in y; expected every "
            f"label 0..{model.n_targets - 1}, got {present.tolist()}."
        )
    return y


def theta_from_estimator(model, estimator) -> Array:
    """A fitted estimator's weights in natgrad's layout (module docstring): a
    ``LogisticRegression``'s ``coef_.T`` over ``intercept_``, an MLP's ``coefs_[l]`` over
    ``intercepts_[l]``."""
    if hasattr(estimator, "coefs_"):
        pairs = zip(estimator.coefs_, estimator.intercepts_)
        return model.pack([np.vstack([W, np.reshape(b, (1, -1))]) for W, b in pairs])
    blocks = [estimator.coef_.T]
    if model.fit_intercept:
        blocks.append(np.reshape(estimator.intercept_, (1, -1)))
    return model.pack([np.vstack(blocks)])


def _check_seed(random_state):
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return None if random_state is None else int(random_state)
    raise TypeError(
        f"random_state must be None or an int (scikit-learn's seed), got "
        f"{type(random_state).__name__} ({random_state!r})."
    )


def _quiet_fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)


class _SklearnSolver(BudgetedSolver):
    """What the scikit-learn adapters share: the prepared data, the parameters, the repr."""

    natgrad_requires = ("scikit-learn",)
    solver = ""
    """scikit-learn's ``solver`` argument."""

    _set_per_problem = ()
    """Estimator parameters that the problem or the budget sets, left out of get_params."""

    def _constructor_params(self) -> dict:
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def _fixed_params(self) -> dict:
        """Estimator parameters this solver always sets, beyond its constructor's."""
        return {}

    def _estimator_params(self) -> dict:
        """scikit-learn's ``solver``, the fixed parameters, and every constructor
        parameter but ``budget_growth`` (which is the curve's, not the estimator's)."""
        own = self._constructor_params()
        own.pop("budget_growth", None)
        return {"solver": self.solver, **self._fixed_params(), **own}

    def _template(self):
        """An estimator in this solver's configuration, for its parameters."""
        raise NotImplementedError

    def get_params(self) -> dict:
        """Every hyperparameter in force: the estimator's ``get_params()`` without the ones
        the problem and the budget set (``_set_per_problem``), plus this solver's own."""
        params = self._template().get_params()
        for name in self._set_per_problem:
            params.pop(name, None)
        params.update(self._constructor_params())
        return dict(sorted(params.items()))

    def _prepared(self, objective) -> _Prepared:
        if not _is_for(self._data, objective):
            self._data = None  # drop the old copy before making the new one
            self._data = self._prepare(objective)
        return self._data

    def _prepare(self, objective) -> _Prepared:
        raise NotImplementedError

    def _check_model(self, model):
        reason = self.skip_reason(model)
        if reason is not None:
            raise ValueError(f"{self.name} cannot fit {model!r}: {reason}")

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self._constructor_params().items())
        return f"{type(self).__name__}({fields})"


# ----------------------------------------------------------------- logistic regression
class SklearnLogisticRegression(_SklearnSolver):
    """scikit-learn's ``LogisticRegression`` with the ``solver`` of the subclass, run to a
    budget of its iterations from θ₀ (see the module docstring).

    Parameters
    ----------
    tol : float, default 1e-10
        scikit-learn's ``tol``, whose meaning differs per solver (module docstring); 1e-10
        so that the budget, not scikit-learn's default 1e-4, ends the fits.
    budget_growth : float, default 1.5
        Ratio of the geometric budget grid of the curve
        (:func:`~natgrad_core.optim.base.budget_grid`).

    ``C = 1/α`` (inf for α = 0), ``fit_intercept`` from the model and ``max_iter`` = the
    budget are set per fit and not reported by :meth:`get_params`; everything else is
    scikit-learn's default.
    """

    _set_per_problem = ("C", "fit_intercept", "max_iter", "warm_start", "random_state")

    def __init__(self, tol: float = 1e-10, budget_growth: float = 1.5):
        self.tol = check_nonnegative(tol, "tol")
        self.budget_growth = check_growth(budget_growth)
        self._data = None

    def _template(self):
        return LogisticRegression(**self._estimator_params())

    def _start(self, W: Array, model, alpha: float) -> Array:
        """The block of shape (n_features [+ 1], n_outputs) given to scikit-learn as θ₀."""
        return W

    def skip_reason(self, model) -> str | None:
        if model.hidden_layer_sizes:
            return (
                f"the model has hidden layers {model.hidden_layer_sizes}; LogisticRegression "
                "fits linear models only (use sklearn-mlp-adam, -sgd or -lbfgs)."
            )
        head = model.head.name
        if head == "gaussian":
            return "the Gaussian head is regression; LogisticRegression fits classifiers."
        if head == "sigmoid" and model.n_outputs > 1:
            return (
                f"a sigmoid head over {model.n_targets} labels is multi-label; "
                "LogisticRegression fits one binary or one multinomial model."
            )
        if head == "softmax" and model.n_targets == 2:
            return (
                "a softmax head over 2 classes has two logits; LogisticRegression fits one "
                "logit for two classes (natgrad's sigmoid head, LogisticModel)."
            )
        if head not in ("softmax", "sigmoid"):
            return f"the {head!r} head has no LogisticRegression counterpart."
        return None

    def _prepare(self, objective) -> _Prepared:
        self._check_model(objective.model)
        X, y = np.ascontiguousarray(objective.X), _class_targets(objective)
        return _Prepared(_key(objective), X, y, _l2_strength(objective), None)

    def solve(self, objective, theta, budget: int):
        """One ``LogisticRegression.fit`` from ``theta`` with ``max_iter=budget``; returns
        (θ, iterations run — the largest ``n_iter_``, message)."""
        data = self._prepared(objective)
        model = objective.model
        W = self._start(model.unpack(theta)[0], model, data.alpha)
        estimator = LogisticRegression(
            C=np.inf if data.alpha == 0 else 1.0 / data.alpha,
            fit_intercept=model.fit_intercept,
            max_iter=int(budget),
            warm_start=True,
            **self._estimator_params(),
        )
        estimator.coef_ = np.array(W[: model.n_features].T, dtype=data.X.dtype, order="C")
        if model.fit_intercept:
            estimator.intercept_ = np.array(W[-1], dtype=data.X.dtype)
        _quiet_fit(estimator, data.X, data.y)
        n_iter = int(np.max(estimator.n_iter_))
        stop = "the budget" if n_iter >= budget else f"scikit-learn's tol={self.tol:g}"
        message = (
            f"LogisticRegression(solver={self.solver!r}) ran {n_iter} of {budget} "
            f"iterations, ended by {stop}."
        )
        return theta_from_estimator(model, estimator), n_iter, message


class LogisticNewtonCholesky(SklearnLogisticRegression):
    """``LogisticRegression(solver="newton-cholesky")``: Newton's method with a Cholesky
    solve of the full Hessian and a line search (scikit-learn's ``_newton_solver.py``);
    multinomial intercepts are returned centered (symmetric parametrization, same loss)."""

    name = "sklearn-newton-cholesky"
    solver = "newton-cholesky"

    def _start(self, W, model, alpha):
        """θ₀ moved along the directions the multinomial loss cannot see so that the last
        class's unpenalized entries are 0: its intercept (or, for α = 0, its whole column)
        subtracted from every class's, which leaves the loss and the predictions unchanged.
        scikit-learn's newton-cholesky takes this reference itself since PR #31866; before
        (1.6, 1.7; issue #31859) it set those entries to 0 instead of subtracting them, and
        a warm start lost its predictions."""
        if model.n_outputs == 1:
            return W
        if alpha == 0:
            return W - W[:, -1:]
        if not model.fit_intercept:
            return W
        W = W.copy()
        W[-1] -= W[-1, -1]
        return W


class LogisticNewtonCG(SklearnLogisticRegression):
    """``LogisticRegression(solver="newton-cg")``: truncated Newton, the Newton system solved
    inexactly by conjugate gradients on Hessian-vector products."""

    name = "sklearn-newton-cg"
    solver = "newton-cg"


class LogisticLBFGS(SklearnLogisticRegression):
    """``LogisticRegression(solver="lbfgs")``: scipy's L-BFGS-B on the loss and gradient."""

    name = "sklearn-lbfgs"
    solver = "lbfgs"


class LogisticSAGA(SklearnLogisticRegression):
    """``LogisticRegression(solver="saga")``: SAGA (Defazio, Bach & Lacoste-Julien 2014), an
    incremental gradient method with variance reduction; an iteration is an epoch.

    random_state : int or None, default None
        Seed of SAGA's sample order (None: numpy's global generator, not reproducible).
    """

    name = "sklearn-saga"
    solver = "saga"
    _set_per_problem = ("C", "fit_intercept", "max_iter", "warm_start")

    def __init__(self, tol: float = 1e-10, random_state: int | None = None, budget_growth=1.5):
        super().__init__(tol=tol, budget_growth=budget_growth)
        self.random_state = _check_seed(random_state)


# ----------------------------------------------------------------- multilayer perceptrons
class SklearnMLP(_SklearnSolver):
    """scikit-learn's ``MLPClassifier`` (softmax and sigmoid heads) or ``MLPRegressor``
    (Gaussian head with unit variance) with the ``solver`` of the subclass, the model's
    hidden layers and activation, and ``alpha`` = natgrad's α (module docstring), run for a
    budget of its iterations (epochs for Adam and SGD) from θ₀.

    ``hidden_layer_sizes``, ``activation``, ``alpha``, ``max_iter`` and ``warm_start`` are
    set per problem and fit and not reported by :meth:`get_params`; parameters not named by
    the subclass's constructor are scikit-learn's defaults.
    """

    _set_per_problem = ("hidden_layer_sizes", "activation", "alpha", "max_iter", "warm_start")
    _stochastic = True

    def __init__(self, budget_growth: float = 1.5):
        self.budget_growth = check_growth(budget_growth)
        self._data = None

    def _fixed_params(self) -> dict:
        # Adam and SGD: the no-improvement stop off, so the budget alone ends a fit
        return {"tol": 0.0, "n_iter_no_change": _NEVER} if self._stochastic else {}

    def _template(self):
        return MLPClassifier(**self._estimator_params())

    def skip_reason(self, model) -> str | None:
        if not model.hidden_layer_sizes:
            return (
                "the model has no hidden layer: it is logistic regression "
                "(use sklearn-lbfgs, -newton-cholesky, -newton-cg or -saga)."
            )
        if model.activation not in _ACTIVATIONS:
            return f"scikit-learn's MLP has no {model.activation!r} activation."
        if not model.fit_intercept:
            return "scikit-learn's MLP always fits intercepts (the model has none)."
        head = model.head.name
        if head == "gaussian" and getattr(model.head, "variance", 1.0) != 1.0:
            return (
                f"MLPRegressor's squared error is the unit-variance Gaussian; the head has "
                f"variance {model.head.variance:g}."
            )
        if head == "softmax" and model.n_targets == 2:
            return (
                "a softmax head over 2 classes has two outputs; MLPClassifier has one "
                "logistic output for two classes (use head='sigmoid')."
            )
        if head not in ("softmax", "sigmoid", "gaussian"):
            return f"the {head!r} head has no scikit-learn MLP counterpart."
        return None

    def _prepare(self, objective) -> _Prepared:
        model = objective.model
        self._check_model(model)
        X = np.ascontiguousarray(objective.X)
        params = dict(
            self._estimator_params(),
            hidden_layer_sizes=model.hidden_layer_sizes,
            activation=_ACTIVATIONS[model.activation],
            alpha=_l2_strength(objective),
            warm_start=True,
        )
        if model.head.name == "gaussian":
            cls, y, rows = MLPRegressor, np.asarray(objective.y, dtype=X.dtype), [0]
            y = y.reshape(-1) if model.n_targets == 1 else y
        else:
            cls, y = MLPClassifier, _class_targets(objective)
            rows = [0] if y.ndim == 2 else np.unique(y, return_index=True)[1]
        # the priming fit: one iteration on a few rows (a batch_size larger than those
        # rows would only draw scikit-learn's clipping warning)
        estimator = cls(**{**params, "max_iter": 1, "batch_size": "auto"})
        _quiet_fit(estimator, X[rows], y[rows])
        estimator.set_params(**params)
        return _Prepared(_key(objective), X, y, params["alpha"], estimator)

    def solve(self, objective, theta, budget: int):
        """One warm-started ``fit`` from ``theta`` with ``max_iter=budget`` (the first call
        per objective also primes the estimator, see the module docstring); returns
        (θ, ``n_iter_``, message)."""
        data = self._prepared(objective)
        estimator = data.estimator
        estimator.set_params(max_iter=int(budget))
        blocks = objective.model.unpack(theta)
        estimator.coefs_ = [np.array(W[:-1], dtype=data.X.dtype) for W in blocks]
        estimator.intercepts_ = [np.array(W[-1], dtype=data.X.dtype) for W in blocks]
        if self._stochastic:
            estimator.t_ = 0
            estimator.loss_curve_ = []
            estimator.best_loss_ = np.inf
        _quiet_fit(estimator, data.X, data.y)
        theta = theta_from_estimator(objective.model, estimator)
        n_iter = int(estimator.n_iter_)
        stop = "the budget" if n_iter >= budget else "scikit-learn's own stopping test"
        message = (
            f"{type(estimator).__name__}(solver={self.solver!r}) ran {n_iter} of {budget} "
            f"iterations, ended by {stop}."
        )
        return theta, n_iter, message


def _check_batch_size(batch_size):
    if isinstance(batch_size, str) and batch_size == "auto":
        return batch_size
    if isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool):
        if batch_size >= 1:
            return int(batch_size)
    raise ValueError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}.")


class MLPAdam(SklearnMLP):
    """scikit-learn's MLP with ``solver="adam"`` (Kingma & Ba 2015): one iteration is one
    epoch of mini-batches of ``batch_size`` ("auto": min(200, n_samples)) in a shuffled
    order.

    Parameters
    ----------
    learning_rate_init : float, default 0.001 (scikit-learn's)
    batch_size : int or "auto", default "auto" (scikit-learn's)
    random_state : int or None, default None — seed of the sample order.
    budget_growth : float, default 1.5 — ratio of the curve's budget grid.
    """

    name = "sklearn-mlp-adam"
    solver = "adam"

    def __init__(
        self,
        learning_rate_init: float = 0.001,
        batch_size="auto",
        random_state: int | None = None,
        budget_growth: float = 1.5,
    ):
        super().__init__(budget_growth=budget_growth)
        self.learning_rate_init = check_positive(learning_rate_init, "learning_rate_init")
        self.batch_size = _check_batch_size(batch_size)
        self.random_state = _check_seed(random_state)


class MLPSGD(SklearnMLP):
    """scikit-learn's MLP with ``solver="sgd"``: mini-batch SGD with (Nesterov) momentum at
    a constant learning rate, one iteration per epoch of shuffled mini-batches. With
    ``momentum=0`` and ``batch_size=n_samples`` an iteration is one gradient step
    θ ← θ − η ∇L(θ) on natgrad's objective.

    Parameters
    ----------
    learning_rate_init : float, default 0.001 (scikit-learn's)
    batch_size : int or "auto", default "auto" (scikit-learn's: min(200, n_samples))
    momentum : float in [0, 1], default 0.9 (scikit-learn's)
    nesterovs_momentum : bool, default True (scikit-learn's)
    random_state : int or None, default None — seed of the sample order.
    budget_growth : float, default 1.5 — ratio of the curve's budget grid.
    """

    name = "sklearn-mlp-sgd"
    solver = "sgd"

    def __init__(
        self,
        learning_rate_init: float = 0.001,
        batch_size="auto",
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        random_state: int | None = None,
        budget_growth: float = 1.5,
    ):
        super().__init__(budget_growth=budget_growth)
        self.learning_rate_init = check_positive(learning_rate_init, "learning_rate_init")
        self.batch_size = _check_batch_size(batch_size)
        self.momentum = check_nonnegative(momentum, "momentum")
        if self.momentum > 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}.")
        if not isinstance(nesterovs_momentum, (bool, np.bool_)):
            raise TypeError(f"nesterovs_momentum must be a bool, got {nesterovs_momentum!r}.")
        self.nesterovs_momentum = bool(nesterovs_momentum)
        self.random_state = _check_seed(random_state)


class MLPLBFGS(SklearnMLP):
    """scikit-learn's MLP with ``solver="lbfgs"``: scipy's L-BFGS-B on the full-batch loss
    and gradient, ``max_iter`` its iterations. Deterministic (scikit-learn's random state
    only draws the initial weights, replaced by θ₀).

    Parameters
    ----------
    tol : float, default 1e-10
        scikit-learn's ``tol``: L-BFGS-B's ``gtol`` (projected gradient max-norm).
    budget_growth : float, default 1.5 — ratio of the curve's budget grid.

    Skips the Gaussian head with more than one output: there scikit-learn's reported loss
    is not the function its gradient belongs to (module docstring), and its line search
    ends fits at arbitrary points (a 4-3-4 tanh autoencoder: stopped after 26 iterations
    with ‖∇L‖_∞ = 7e-3).
    """

    name = "sklearn-mlp-lbfgs"
    solver = "lbfgs"
    _stochastic = False
    _set_per_problem = SklearnMLP._set_per_problem + ("random_state",)

    def __init__(self, tol: float = 1e-10, budget_growth: float = 1.5):
        super().__init__(budget_growth=budget_growth)
        self.tol = check_nonnegative(tol, "tol")

    def skip_reason(self, model) -> str | None:
        reason = super().skip_reason(model)
        if reason is None and model.head.name == "gaussian" and model.n_outputs > 1:
            return (
                f"with {model.n_outputs} outputs MLPRegressor's L-BFGS line-searches a "
                "loss that is not the function of its gradient (the squared error averaged "
                "over outputs, the gradient summed; scikit-learn issue #8349), so its fits "
                "end at arbitrary points; sklearn-mlp-adam and -sgd use only the gradient."
            )
        return reason
