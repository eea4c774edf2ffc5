"""The registry of recommended configurations: every entry constructs, resolves completely,
and is the configuration that NaturalGradient, make_optimizer and the estimator use."""

from __future__ import annotations

import inspect
import json

import pytest

from natgrad_core import NaturalGradientClassifier
from natgrad_core.optim import (
    PRECONDITIONERS,
    SOLVERS,
    STEP_RULES,
    GradientDescent,
    NaturalGradient,
    make_optimizer,
    registry,
)
from natgrad_core.optim.registry import RECOMMENDED, optimizer_params, resolved_params

SEED = 3


def _rebuilt(solver, resolved):
    """The optimizer built back from a resolved dict alone, by the constructors directly."""
    params = dict(resolved)
    step = params.get("step")
    if step is not None:
        step = dict(step)
        params["step"] = STEP_RULES[step.pop("name")](**step)
    if solver in PRECONDITIONERS:
        return NaturalGradient(**params)
    return type(make_optimizer(solver))(**params)


def test_the_table_covers_every_solver_and_nothing_else():
    assert list(RECOMMENDED) == list(SOLVERS)


@pytest.mark.parametrize("solver", SOLVERS)
def test_every_recommended_configuration_constructs_and_resolves_completely(solver):
    optimizer = make_optimizer(solver, **RECOMMENDED[solver])
    resolved = resolved_params(solver)
    assert json.loads(json.dumps(resolved)) == resolved
    # every constructor parameter, defaults included
    names = [n for n in inspect.signature(type(optimizer).__init__).parameters if n != "self"]
    assert list(resolved) == names
    # nothing in force is missing: the constructors rebuild the same optimizer from it
    assert repr(_rebuilt(solver, resolved)) == repr(optimizer)
    assert repr(make_optimizer(solver)) == repr(optimizer)


@pytest.mark.parametrize("curvature", PRECONDITIONERS)
def test_natural_gradient_defaults_to_the_recommended_step_and_damping(curvature):
    optimizer = NaturalGradient(curvature)
    assert optimizer.step_rule.name == RECOMMENDED[curvature]["step"]
    assert optimizer.damping == RECOMMENDED[curvature]["damping"]
    assert repr(NaturalGradient(curvature, step="auto")) == repr(optimizer)


# name: (solver, params, {dotted path in the resolved dict: expected value})
RESOLUTION_CASES = {
    "override-one-key": (
        "kfac",
        {"damping": 0.3},
        {"damping": 0.3, "step.name": RECOMMENDED["kfac"]["step"]},
    ),
    "auto-is-recommended": (
        "cg",
        {"step": "auto"},
        {"step.name": "lm", "cg_maxiter": RECOMMENDED["cg"]["cg_maxiter"]},
    ),
    "auto-on-a-stepless-solver": ("momentum", {"step": "auto"}, dict(RECOMMENDED["momentum"])),
    # gd's recommended 1.0 is Armijo's first trial step: a fixed step falls back to the
    # constructor's own default rate
    "step-drops-coupled-rate": (
        "gd",
        {"step": "fixed"},
        {
            "step.name": "fixed",
            "learning_rate": inspect.signature(GradientDescent).parameters["learning_rate"].default,
        },
    ),
    "same-step-keeps-coupled-rate": (
        "gd",
        {"step": "armijo"},
        {"step.name": "armijo", "step.initial": RECOMMENDED["gd"]["learning_rate"]},
    ),
    "rate-keeps-recommended-step": (
        "gd",
        {"learning_rate": 0.5},
        {"step.name": "armijo", "step.initial": 0.5},
    ),
    "explicit-fixed-ng": (
        "exact",
        {"step": "fixed"},
        {"step.name": "fixed", "damping": RECOMMENDED["exact"]["damping"]},
    ),
}


@pytest.mark.parametrize("case", sorted(RESOLUTION_CASES))
def test_given_keys_override_single_hyperparameters(case):
    solver, params, expected = RESOLUTION_CASES[case]
    resolved = resolved_params(solver, **params)
    for path, value in expected.items():
        got = resolved
        for part in path.split("."):
            got = got[part]
        assert got == value, (path, got, value)


@pytest.mark.parametrize("solver", SOLVERS)
def test_estimator_auto_is_the_recommended_configuration(solver):
    estimator = NaturalGradientClassifier(solver=solver)
    seeded = {"random_state": SEED} if solver in PRECONDITIONERS else {}
    assert optimizer_params(estimator._make_optimizer(SEED)) == resolved_params(solver, **seeded)


def test_estimator_natural_gradient_and_make_optimizer_read_the_table(monkeypatch):
    """Change the table: everything that picks a default configuration follows."""
    table = {**RECOMMENDED, "exact": {"damping": 0.25, "step": "armijo"}, "adam": {}}
    monkeypatch.setattr(registry, "RECOMMENDED", table)
    built = {
        "NaturalGradient": NaturalGradient("exact"),
        "make_optimizer": make_optimizer("exact"),
        "estimator": NaturalGradientClassifier(solver="exact")._make_optimizer(SEED),
    }
    for route, optimizer in built.items():
        assert (optimizer.step_rule.name, optimizer.damping) == ("armijo", 0.25), route
    adam_rate = inspect.signature(type(make_optimizer("adam"))).parameters["learning_rate"]
    assert NaturalGradientClassifier(solver="adam")._make_optimizer(SEED).learning_rate == (
        adam_rate.default
    )
