"""Solver names → optimizers, and the one table of recommended configurations.

:data:`RECOMMENDED` maps every solver name to the hyperparameters we recommend for it.
Everything that picks a configuration reads it: :func:`make_optimizer`,
``NaturalGradient(step="auto")``, the estimator's ``step="auto"``, the benchmark grid's
default solver set, the ``[[solver]]`` entries of a TOML configuration, the asv benchmarks
and ``natgrad list``. Why each choice:

exact, cg   ``step="lm"``, ``damping=1e-4``. A full natural-gradient (Gauss–Newton) step
            δ = d is only as good as the quadratic model it minimizes; far from the
            optimum of a non-convex problem a unit step overshoots without bound (wine-mlp,
            unit steps: loss 0.97 → 5.8e6 in four steps). Levenberg–Marquardt adapts λ from
            the reduction ratio and rejects steps that do not reduce the loss (Martens 2010
            §4.1, "Hessian-free"); as λ shrinks near a minimum the step becomes Newton's, so
            convex problems keep their fast local convergence. λ₀ = 1e-4 is small against
            the curvature of the standardized bundled problems, so the first steps are
            already nearly undamped where that is safe.
cg          ``cg_forcing="eisenstat-walker"``, ``cg_warm_start=False``, ``cg_maxiter=50``:
            truncated CG, an inexact Newton method (Nocedal & Wright 2006 §7.1; Martens
            2010 §4.5–4.6): each system is solved only to the Eisenstat–Walker forcing term
            (loose far from the optimum, tight near it), as scikit-learn's newton-cg does
            with its own sequence; solving every system to 1e-10 cost 3-7x the products
            for the same iterates on the bundled logistic fits. With loose solves the
            previous direction is a poor start and costs one product, so CG starts from 0.
            50 iterations bound the cost of one step.
kfac, ekfac ``step="quadratic"``, ``damping=1e-4``: K-FAC's direction has a reliable
            orientation but an unreliable length, because the Kronecker factorization
            misjudges the curvature's scale; the step length and momentum (α, μ) are chosen
            by minimizing the quadratic model with exact Fisher-vector products, and λ is
            adapted by the Levenberg–Marquardt rule (Martens & Grosse 2015 §6.4, §6.5, §7).
            George et al. (2018) use the same step for EKFAC.
diag        ``step="armijo"``, ``damping=1e-4``: the diagonal Fisher ignores every correlation
            between parameters, so neither the length of its step nor a quadratic model
            built from it can be trusted; a backtracking line search (Nocedal & Wright 2006,
            Algorithm 3.1) guarantees decrease at the price of a few loss evaluations.
            λ keeps near-zero diagonal entries (dead units) from producing huge steps.
gd          ``step="armijo"``, ``learning_rate=1.0``: no step size to tune per problem;
            1.0 is the first trial step of the line search, halved until Armijo's
            sufficient-decrease condition holds.
momentum    ``learning_rate=0.1``, ``momentum=0.9``: μ = 0.9 is the standard heavy-ball
            value (Polyak 1964; Sutskever et al. 2013); η = 0.1 is stable on the bundled
            problems, whose features are standardized.
adam        ``learning_rate=0.01``: Kingma & Ba's (2015) η = 1e-3 suits long stochastic
            runs; within the benchmark budgets (100–300 full-batch iterations) it barely
            leaves the initialization, and 1e-2 is the common choice for small problems.
lbfgs       scipy's defaults: 10 correction pairs (Nocedal & Wright 2006 §7.2 recommend
            between 3 and 20).

Solvers shipped as plugins (:data:`SHIPPED_SOLVERS`) and solvers of other packages
(:mod:`natgrad_core.plugins`: an import path ``"package.module:Factory"`` or a
``natgrad.solvers`` entry point) are made by the same :func:`make_optimizer`: the factory
is called with the hyperparameters as keywords. Their resolved configuration is the
optimizer's ``get_params()`` when it has one (scikit-learn's convention), otherwise the
factory's signature: the keywords given and the defaults of the others. A plugin whose
factory takes ``random_state`` gets the run seed unless one is given, as the
natural-gradient solvers do.

scikit-learn's solvers (sklearn-*) run in scikit-learn's default configuration, with
``tol`` lowered to 1e-10 so that the budget, not scikit-learn's default stopping rule,
ends their fits (see :mod:`natgrad_core.optim.sklearn_solvers`).

A configuration is resolved by one rule: start from the solver's recommended
hyperparameters, then let every keyword given override its own entry. Two couplings: a
recommended ``learning_rate`` belongs to its recommended ``step`` (gd's 1.0 is Armijo's
first trial step, not a safe fixed rate), so changing ``step`` to another rule without
giving ``learning_rate`` drops it and the optimizer's own default applies; and a given
``cg_rtol`` without ``cg_forcing`` asks for that tolerance at every step, so it drops the
recommended forcing sequence (under which ``cg_rtol`` is only a floor). ``step="auto"`` means
"the recommended step" everywhere.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from enum import Enum
from types import MappingProxyType

import numpy as np

from .. import plugins
from .base import Optimizer, is_optimizer
from .baselines import LBFGS, Adam, GradientDescent, Momentum
from .natural_gradient import PRECONDITIONERS, NaturalGradient
from .steps import StepRule

__all__ = [
    "RECOMMENDED",
    "SHIPPED_SOLVERS",
    "SOLVERS",
    "make_optimizer",
    "solver_identity",
    "optimizer_params",
    "recommended_params",
    "resolved_params",
]


_BASELINES = {"gd": GradientDescent, "momentum": Momentum, "adam": Adam, "lbfgs": LBFGS}
SOLVERS = PRECONDITIONERS + tuple(_BASELINES)
"""natgrad's own algorithms."""

_SKLEARN = "natgrad_core.optim.sklearn_solvers"
SHIPPED_SOLVERS = MappingProxyType(
    {
        "sklearn-newton-cholesky": f"{_SKLEARN}:LogisticNewtonCholesky",
        "sklearn-newton-cg": f"{_SKLEARN}:LogisticNewtonCG",
        "sklearn-lbfgs": f"{_SKLEARN}:LogisticLBFGS",
        "sklearn-saga": f"{_SKLEARN}:LogisticSAGA",
        "sklearn-mlp-adam": f"{_SKLEARN}:MLPAdam",
        "sklearn-mlp-sgd": f"{_SKLEARN}:MLPSGD",
        "sklearn-mlp-lbfgs": f"{_SKLEARN}:MLPLBFGS",
    }
)
"""Solvers natgrad ships as plugins (name -> import path): scikit-learn's
``LogisticRegression`` and ``MLPClassifier`` / ``MLPRegressor`` solvers, made like any
other plugin."""

RECOMMENDED = MappingProxyType(
    {
        "exact": MappingProxyType({"damping": 1e-4, "step": "lm"}),
        "diag": MappingProxyType({"damping": 1e-4, "step": "armijo"}),
        "kfac": MappingProxyType({"damping": 1e-4, "step": "quadratic"}),
        "ekfac": MappingProxyType({"damping": 1e-4, "step": "quadratic"}),
        "cg": MappingProxyType(
            {
                "damping": 1e-4,
                "step": "lm",
                "cg_maxiter": 50,
                "cg_forcing": "eisenstat-walker",
                "cg_warm_start": False,
            }
        ),
        "gd": MappingProxyType({"learning_rate": 1.0, "step": "armijo"}),
        "momentum": MappingProxyType({"learning_rate": 0.1, "momentum": 0.9}),
        "adam": MappingProxyType({"learning_rate": 0.01}),
        "lbfgs": MappingProxyType({}),
    }
)
"""Solver name → recommended hyperparameters (keywords of :func:`make_optimizer`); see the
module docstring for the reason behind each."""


def _constructor(solver: str):
    if solver in PRECONDITIONERS:
        return NaturalGradient
    if solver not in _BASELINES:
        raise ValueError(
            f"Unknown solver {solver!r}; expected one of {list(SOLVERS)}, "
            f"{list(SHIPPED_SOLVERS)}, an import path 'package.module:Factory' or the name "
            f"of an installed {plugins.SOLVER_GROUP!r} entry point."
        )
    return _BASELINES[solver]


def is_plugin(solver) -> bool:
    """Whether ``solver`` names a plugin (shipped or not) rather than a natgrad algorithm."""
    return solver not in SOLVERS


def _plugin(solver: str) -> plugins.Plugin:
    if not isinstance(solver, str) or not solver:
        raise ValueError(f"solver must be a non-empty string, got {solver!r}.")
    named = solver in SHIPPED_SOLVERS or solver in plugins.entry_point_names(plugins.SOLVER_GROUP)
    if not named and not plugins.is_import_path(solver):
        _constructor(solver)  # raises the "Unknown solver" message
    return plugins.load(solver, plugins.SOLVER_GROUP, SHIPPED_SOLVERS)


def solver_identity(solver: str) -> dict | None:
    """The plugin identity of ``solver`` (:meth:`natgrad_core.plugins.Plugin.identity`),
    None for natgrad's own algorithms."""
    return _plugin(solver).identity() if is_plugin(solver) else None


def takes_seed(solver: str) -> bool:
    """Whether the solver's optimizer takes ``random_state`` (then a benchmark run passes
    its seed unless one is given)."""
    if not is_plugin(solver):
        return solver in PRECONDITIONERS
    try:
        return "random_state" in inspect.signature(_plugin(solver).obj).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


def _make_plugin(solver: str, params: dict):
    plugin = _plugin(solver)
    try:
        optimizer = plugin.obj(**params)
    except TypeError as exc:
        raise TypeError(f"solver {solver!r} ({plugin.target}): {exc}") from exc
    except ValueError as exc:
        raise plugins.PluginError(f"solver {solver!r} ({plugin.target}): {exc}") from exc
    except (Exception, SystemExit) as exc:  # a plugin's constructor may raise anything
        raise plugins.PluginError(
            f"plugin {solver!r} ({plugin.target}) cannot be constructed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not is_optimizer(optimizer):
        raise plugins.PluginError(
            f"plugin {solver!r} ({plugin.target}) returned {type(optimizer).__name__}; "
            "expected an optimizer with init(objective, theta) and step(objective, theta, "
            "state) methods (natgrad_core.optim.Optimizer) or a "
            "natgrad_core.optim.base.BudgetedSolver."
        )
    return optimizer


@functools.cache
def _signature_names(cls) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(cls.__init__).parameters if name != "self")


def _parameter_names(cls) -> list[str]:
    return list(_signature_names(cls))


def recommended_params(solver: str, **params) -> dict:
    """The keyword arguments :func:`make_optimizer` passes on: ``RECOMMENDED[solver]``
    overridden by ``params`` (see the module docstring for the one coupling rule);
    ``step="auto"`` counts as not given, also for solvers without a step rule.

    Raises ValueError for an unknown solver and TypeError for a keyword the solver's
    optimizer does not take.
    """
    if isinstance(params.get("step"), str) and params["step"] == "auto":
        del params["step"]
    if is_plugin(solver):
        _plugin(solver)  # unknown or broken plugins raise here
        return params
    cls = _constructor(solver)
    names = _parameter_names(cls)
    if solver in PRECONDITIONERS:
        names.remove("curvature")
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise TypeError(
            f"solver {solver!r} takes no hyperparameter {', '.join(map(repr, unknown))}; "
            f"expected some of {names}."
        )
    resolved = dict(RECOMMENDED[solver])
    step = params.get("step", resolved.get("step"))
    if getattr(step, "name", step) != resolved.get("step") and "learning_rate" not in params:
        resolved.pop("learning_rate", None)
    if "cg_rtol" in params and "cg_forcing" not in params:
        resolved.pop("cg_forcing", None)
    resolved.update(params)
    return resolved


def make_optimizer(solver: str, **params) -> Optimizer:
    """An optimizer from a solver name in its recommended configuration, with ``params``
    overriding single hyperparameters: natural gradient with curvature ``solver`` for
    exact | diag | kfac | ekfac | cg, or a baseline gd | momentum | adam | lbfgs.

    ``make_optimizer("exact")`` is natural gradient with Levenberg–Marquardt damping;
    ``make_optimizer("exact", step="fixed")`` takes fixed unit steps.
    """
    kwargs = recommended_params(solver, **params)
    if is_plugin(solver):
        return _make_plugin(solver, kwargs)
    cls = _constructor(solver)
    if cls is NaturalGradient:
        return NaturalGradient(curvature=solver, **kwargs)
    return cls(**kwargs)


def _plain(value):
    """A JSON value for a hyperparameter: enums by value, step rules by name and
    parameters, numbers as Python numbers."""
    if isinstance(value, StepRule):
        return {"name": value.name, **optimizer_params(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, np.random.SeedSequence):
        return {"entropy": _plain(value.entropy), "spawn_key": list(value.spawn_key)}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(
        f"hyperparameter value {value!r} of type {type(value).__name__} has no JSON form; "
        "expected None, bool, str, a number, an Enum or a StepRule."
    )


def optimizer_params(optimizer) -> dict:
    """Every constructor parameter of ``optimizer`` (an Optimizer or a StepRule) with the
    value in force, defaults included, as a JSON-serializable dict.

    The step rule appears under ``"step"`` as ``{"name": ..., <its parameters>}``. An
    optimizer with ``get_params()`` (scikit-learn's convention, plugins) is read through it.
    """
    if callable(getattr(optimizer, "get_params", None)):
        return _plain_items(optimizer.get_params())
    out = {}
    for name in _parameter_names(type(optimizer)):
        value = optimizer.step_rule if name == "step" else getattr(optimizer, name)
        out[name] = _plain(value)
    return out


def resolved_params(solver: str, **params) -> dict:
    """The full resolved hyperparameters of ``make_optimizer(solver, **params)``: every
    constructor parameter of the optimizer, defaults included, JSON-serializable.

    >>> resolved_params("exact")["step"]["name"]
    'lm'
    """
    optimizer = make_optimizer(solver, **params)
    if not is_plugin(solver) or callable(getattr(optimizer, "get_params", None)):
        return optimizer_params(optimizer)
    return _signature_params(solver, params)


def _signature_params(solver: str, params: dict) -> dict:
    """The keywords given and the defaults of the factory's other parameters."""
    factory = _plugin(solver).obj
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read: what was given is all we know
        return _plain_items(params)
    bound = signature.bind_partial(**params)
    bound.apply_defaults()
    out = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            out[name] = value
    return _plain_items(out)


def _plain_items(params) -> dict:
    """``params`` with JSON values (:func:`_plain`), sorted; TypeError naming the first
    hyperparameter that has none."""
    out = {}
    for name, value in sorted(dict(params).items()):
        try:
            out[str(name)] = _plain(value)
        except TypeError as exc:
            raise TypeError(f"hyperparameter {name!r}: {exc}") from None
    return out
