"""``NaturalGradientClassifier``: logistic regression and MLPs trained by natural gradient,
with the scikit-learn estimator API."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._memory import format_bytes
from ._threads import check_threads
from ._validation import (
    DivergenceWarning,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from .models.mlp import MLP, LogisticModel
from .optim.driver import minimize
from .optim.natural_gradient import PRECONDITIONERS
from .optim.registry import SOLVERS, make_optimizer

__all__ = ["NaturalGradientClassifier"]

# Features whose squares overflow cannot be trained on: the gradient and the curvature of
# every model here hold sums of products x_i · x_j over samples (logistic regression's
# Fisher is Xᵀ Λ X / n; K-FAC's input factor Āᵀ Ā / n). ``n_samples · n_features · max x²``
# must stay this factor below float64's largest value, for the damping and the solvers.
_OVERFLOW_MARGIN = 1e4


class NaturalGradientClassifier(ClassifierMixin, BaseEstimator):
    """Classifier trained by natural gradient (or a baseline optimizer).

    Minimizes ``mean log-loss + alpha · ‖W‖² / (2 · n_samples)`` (intercepts unpenalized),
    scikit-learn's ``MLPClassifier`` convention: with ``hidden_layer_sizes=()`` this is
    ``LogisticRegression(C=1/alpha)``'s objective. Binary problems use one sigmoid output,
    multiclass problems a softmax.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default ()
        Empty: (multinomial) logistic regression.
    activation : {"tanh", "relu", "logistic", "erf", "identity"}, default "tanh"
    solver : {"exact", "diag", "kfac", "ekfac", "cg", "gd", "momentum", "adam", "lbfgs"}
        The first five are natural gradient with that Fisher representation.
    fisher : {"exact", "mc", "empirical"}, default "exact"
    alpha : float, default 1e-4
    damping : float or None, default None
    step : {"auto", "fixed", "kl", "armijo", "lm", "quadratic"} or StepRule, default "auto"
    learning_rate : float or None, default None
        ``step="auto"``, ``damping=None`` and ``learning_rate=None`` take the recommended
        configuration of ``solver`` (:data:`~natgrad_core.optim.registry.RECOMMENDED`, which
        explains each choice): Levenberg–Marquardt damping for exact and cg, K-FAC's
        quadratic model for kfac and ekfac, Armijo line search for diag and gd, fixed rates
        for momentum and adam. A value given overrides its own entry only; the solvers
        without a step rule or damping (momentum, adam, lbfgs) reject one.
    max_iter : int, default 200
    tol : float, default 1e-5
        Stop when the gradient's max-norm falls below ``tol``.
    batch_size : int or None, default None
        Mini-batch size (None: full batch); clipped to n_samples.
    fit_intercept : bool, default True
    random_state : int, RandomState-free seed or None
        Seeds the initialization, mini-batch order and Monte-Carlo labels.
    blas_threads : int or None, default None
        Limit every BLAS and OpenMP thread pool to this many threads during ``fit`` (None:
        leave them as they are). On a busy machine, 1 is often several times faster.

    Attributes
    ----------
    classes_, n_features_in_, n_iter_, loss_curve_ (training loss after each iteration),
    coef_ and intercept_ (logistic regression; shape (1, n_features) for two classes,
    (n_classes, n_features) otherwise), coefs_ and intercepts_ (MLPs), result_ (the full
    :class:`~natgrad_core.optim.driver.Result`), status_, blas_threads_ (the largest BLAS
    or OpenMP thread count in force during ``fit``).
    """

    def __init__(
        self,
        hidden_layer_sizes=(),
        activation="tanh",
        solver="exact",
        fisher="exact",
        alpha=1e-4,
        damping=None,
        step="auto",
        learning_rate=None,
        max_iter=200,
        tol=1e-5,
        batch_size=None,
        fit_intercept=True,
        random_state=None,
        blas_threads=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.fisher = fisher
        self.alpha = alpha
        self.damping = damping
        self.step = step
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.fit_intercept = fit_intercept
        self.random_state = random_state
        self.blas_threads = blas_threads

    def _check_params(self) -> None:
        """Raise for a bad constructor parameter, naming it; the optimizer's own parameters
        (step, damping, learning_rate, fisher) are checked where it is built, by name."""
        if not isinstance(self.solver, str) or self.solver not in SOLVERS:
            raise ValueError(f"Unknown solver {self.solver!r}; expected one of {list(SOLVERS)}.")
        check_nonnegative(self.alpha, "alpha")
        check_positive_int(self.max_iter, "max_iter")
        check_nonnegative(self.tol, "tol")
        if self.batch_size is not None:
            check_positive_int(self.batch_size, "batch_size")
        if self.learning_rate is not None:
            check_positive(self.learning_rate, "learning_rate")
        if self.damping is not None:
            check_nonnegative(self.damping, "damping")
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(
                f"fit_intercept must be a bool, got {type(self.fit_intercept).__name__} "
                f"({self.fit_intercept!r})."
            )
        check_threads(self.blas_threads)
        try:
            np.random.default_rng(self.random_state)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "random_state must be None, an int >= 0, a SeedSequence or a Generator, "
                f"got {self.random_state!r} ({exc})."
            ) from None
        for width in self._hidden():
            check_positive_int(width, "hidden_layer_sizes entries")
        # the MLP checks its activation name; logistic regression (no hidden layer) would
        # ignore a wrong one silently
        MLP(1, 2, (1,), self.activation)

    def _hidden(self) -> tuple:
        if isinstance(self.hidden_layer_sizes, (int, np.integer)):
            return (self.hidden_layer_sizes,)
        try:
            return tuple(self.hidden_layer_sizes)
        except TypeError:
            raise TypeError(
                "hidden_layer_sizes must be an int or a tuple of ints, got "
                f"{type(self.hidden_layer_sizes).__name__} ({self.hidden_layer_sizes!r})."
            ) from None

    def _make_optimizer(self, seed):
        params = {"step": self.step, "learning_rate": self.learning_rate}
        if self.solver in PRECONDITIONERS:
            params.update(fisher=self.fisher, damping=self.damping, random_state=seed)
        return make_optimizer(self.solver, **{k: v for k, v in params.items() if v is not None})

    def _make_model(self, n_features, n_classes):
        hidden = tuple(int(h) for h in self._hidden())
        if not hidden:
            return LogisticModel(n_features, n_classes, fit_intercept=self.fit_intercept)
        head = "sigmoid" if n_classes == 2 else "softmax"
        return MLP(n_features, n_classes, hidden, self.activation, head, self.fit_intercept)

    def fit(self, X, y):
        """Fit to X of shape (n_samples, n_features) and labels y of shape (n_samples,).

        Raises ``ValueError`` for a bad parameter (naming it), features too large to train
        on, or a curvature that would not fit in memory
        (:class:`~natgrad_core._memory.MemoryLimitError`); ``TypeError`` for sparse X.
        """
        self._check_params()
        _check_dense(X)
        X, y = validate_data(self, X, y, dtype=np.float64)
        largest = float(np.max(np.abs(X))) if X.size else 0.0
        bound = np.sqrt(np.finfo(np.float64).max / (_OVERFLOW_MARGIN * X.size))
        if largest > bound:
            raise ValueError(
                f"X has features as large as {largest:.3g}: too large to train on. The "
                "gradient and the curvature sum their squares over samples and features, "
                f"which overflows float64 above {bound:.3g} for X of shape {X.shape}. "
                "Scale the features first, e.g. with sklearn.preprocessing.StandardScaler."
            )
        check_classification_targets(y)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"This solver needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {self.classes_[0]!r}."
            )
        rng = np.random.default_rng(self.random_state)
        seeds = rng.integers(2**31 - 1, size=2)
        model = self._make_model(X.shape[1], len(self.classes_))
        optimizer = self._make_optimizer(int(seeds[0]))
        batch_size = None if self.batch_size is None else min(int(self.batch_size), X.shape[0])
        if optimizer.full_batch_only:
            batch_size = None  # ignored by full-batch methods, as MLPClassifier does
        last_finite = {}

        def keep_finite(theta, row):
            if np.isfinite(row["loss"]) and np.isfinite(theta).all():
                last_finite["theta"] = theta.copy()

        with warnings.catch_warnings():
            # the driver's divergence warning is re-issued below with what fit() keeps
            warnings.simplefilter("ignore", DivergenceWarning)
            result = minimize(
                model,
                X,
                y_encoded,
                optimizer,
                alpha=self.alpha,
                max_iter=self.max_iter,
                tol=self.tol,
                batch_size=batch_size,
                random_state=int(seeds[1]),
                callback=keep_finite,
                blas_threads=self.blas_threads,
            )
        theta = result.theta
        if result.status == "diverged":
            theta = last_finite["theta"]
            warnings.warn(
                f"{self.solver} diverged ({result.message}); keeping the last finite "
                "parameters. Lower the learning rate or raise the damping.",
                DivergenceWarning,
                stacklevel=2,
            )
        elif result.status != "converged":
            # L-BFGS-B ending on its own ("ABNORMAL", no progress possible), a time limit or
            # a stop request are as unconverged as running out of iterations
            why = (
                f"reached max_iter={self.max_iter}"
                if result.status == "max_iter"
                else f"stopped after {result.n_iter} iterations ({result.status}: {result.message})"
            )
            warnings.warn(
                f"{self.solver} {why} before the gradient norm fell below tol={self.tol} "
                f"(it is {result.grad_norm:.3g}).",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.model_ = model
        self.theta_ = theta
        self.result_ = result
        self.status_ = result.status
        self.blas_threads_ = result.blas_threads
        self.n_iter_ = result.n_iter
        self.loss_curve_ = result.history["loss"].iloc[1:].tolist()
        blocks = model.unpack(theta)
        if model.fit_intercept:
            weights = [b[:-1] for b in blocks]
            intercepts = [b[-1] for b in blocks]
        else:
            weights = list(blocks)
            intercepts = [np.zeros(b.shape[1]) for b in blocks]
        if isinstance(model, LogisticModel):
            self.coef_ = weights[0].T.copy()
            self.intercept_ = intercepts[0].copy()
        else:
            self.coefs_ = [w.copy() for w in weights]
            self.intercepts_ = [b.copy() for b in intercepts]
        return self

    def _outputs(self, X):
        check_is_fitted(self)
        _check_dense(X)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.model_.predict_outputs(self.theta_, X)

    def decision_function(self, X):
        """Logits: shape (n_samples,) for two classes, (n_samples, n_classes) otherwise."""
        z = self._outputs(X)
        return z.ravel() if z.shape[1] == 1 else z

    def predict_proba(self, X):
        """Class probabilities of shape (n_samples, n_classes), columns ordered as classes_."""
        z = self._outputs(X)
        p = self.model_.head.predict(z)
        if p.shape[1] == 1:
            p = np.hstack([1.0 - p, p])
        return p

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Most probable class for each row of X."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _check_dense(X) -> None:
    """The models need dense X; refuse a scipy.sparse matrix, saying what densifying costs."""
    if scipy.sparse.issparse(X):
        n_samples, n_features = X.shape
        raise TypeError(
            f"NaturalGradientClassifier needs dense X; got a scipy.sparse matrix of shape "
            f"({n_samples}, {n_features}) with {X.nnz} stored values. X.toarray() makes it "
            f"dense in {format_bytes(8 * n_samples * n_features)} of float64."
        )
