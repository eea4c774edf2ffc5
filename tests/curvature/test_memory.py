"""The memory guard: dense curvature arrays are refused before allocation when they would
exceed the limit, at exactly the size theory gives (8 bytes per float64 entry times the
arrays alive at once), with a message saying what to choose instead.

The limit is monkeypatched to a few bytes around each theoretical size, so nothing big is
ever allocated."""

from __future__ import annotations

import os

import numpy as np
import pytest

import natgrad_core._memory as memory
from natgrad_core import minimize
from natgrad_core._memory import MemoryLimitError
from natgrad_core.curvature import KFAC, DenseFisher
from natgrad_core.models import MLP, LogisticModel, Objective
from natgrad_core.optim.registry import make_optimizer
from natgrad_core.sklearn import NaturalGradientClassifier

N_SAMPLES, N_FEATURES, N_CLASSES, HIDDEN = 12, 3, 4, 5
FLOAT64 = 8


def _data(n_classes=N_CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N_SAMPLES, N_FEATURES)), rng.integers(n_classes, size=N_SAMPLES)


def _limit(monkeypatch, n_bytes):
    monkeypatch.setattr(memory, "memory_limit", lambda: n_bytes)


def _mlp_objective():
    """Binary MLP: one output, so no (n, K, K) array; P > n so "auto" picks sample space."""
    X, y = _data(2)
    model = MLP(N_FEATURES, 2, (HIDDEN,), "tanh", "sigmoid")
    return Objective(model, X, y, alpha=0.1), model.init_params(np.random.default_rng(0))


def _softmax_objective():
    X, y = _data()
    model = LogisticModel(N_FEATURES, N_CLASSES)
    return Objective(model, X, y, alpha=0.1), model.init_params(np.random.default_rng(0))


# (what, build and use the array, bytes by theory)
P_MLP = (N_FEATURES + 1) * HIDDEN + (HIDDEN + 1)
P_SOFTMAX = (N_FEATURES + 1) * N_CLASSES
CASES = [
    (
        "parameter-space matrix and its damped copy",
        lambda: DenseFisher(*_mlp_objective(), method="parameter").solve(np.ones(P_MLP), 1e-3),
        2 * FLOAT64 * P_MLP**2,
    ),
    (
        "sample-space Gram, the tiled kernel and the syrk product",
        lambda: DenseFisher(*_mlp_objective(), method="sample").solve(np.ones(P_MLP), 1e-3),
        3 * FLOAT64 * N_SAMPLES**2,
    ),
    (
        "output curvature sqrt(Lambda) for K-FAC: three (n, K, K) temporaries",
        lambda: KFAC(*_softmax_objective()),
        3 * FLOAT64 * N_SAMPLES * N_CLASSES**2,
    ),
]


@pytest.mark.parametrize(("what", "build", "n_bytes"), CASES, ids=[c[0] for c in CASES])
def test_refused_exactly_above_the_theoretical_size(monkeypatch, what, build, n_bytes):
    _limit(monkeypatch, n_bytes)
    build()  # fits exactly
    _limit(monkeypatch, n_bytes - 1)
    with pytest.raises(MemoryLimitError, match=r"nothing was allocated\. Choose .*cg"):
        build()


def test_class_block_matrix_refuses_before_building_lambda(monkeypatch):
    """Softmax regression builds the parameter-space matrix from Λ of shape (n, K, K):
    the (P, P) pair is checked first, then Λ; each refuses one byte below its size."""
    obj, theta = _softmax_objective()
    matrix_bytes = 2 * FLOAT64 * P_SOFTMAX**2
    lam_bytes = 3 * FLOAT64 * N_SAMPLES * N_CLASSES**2
    _limit(monkeypatch, matrix_bytes - 1)
    with pytest.raises(MemoryLimitError, match=rf"{P_SOFTMAX} x {P_SOFTMAX}"):
        DenseFisher(obj, theta, "mc", random_state=0, method="parameter").matrix()
    _limit(monkeypatch, lam_bytes - 1)
    with pytest.raises(MemoryLimitError, match=rf"{N_SAMPLES} x {N_CLASSES} x {N_CLASSES}"):
        DenseFisher(obj, theta, "exact", method="parameter")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_monte_carlo_and_matrix_free_need_no_output_curvature(monkeypatch):
    """The refusal suggests fisher='mc' and solver='cg': both work under a limit that
    refuses the exact (n, K, K) array."""
    X, y = _data()
    _limit(monkeypatch, 3 * FLOAT64 * N_SAMPLES * N_CLASSES**2 - 1)
    for kwargs in ({"solver": "cg"}, {"solver": "kfac", "fisher": "mc"}):
        NaturalGradientClassifier(max_iter=2, random_state=0, **kwargs).fit(X, y)


def test_estimator_and_minimize_refuse_with_a_memory_and_value_error(monkeypatch):
    X, y = _data()
    _limit(monkeypatch, 1024)
    with pytest.raises(ValueError, match="physical memory"):
        NaturalGradientClassifier(random_state=0).fit(X, y)
    with pytest.raises(MemoryError, match="Choose"):
        minimize(LogisticModel(N_FEATURES, N_CLASSES), X, y, make_optimizer("exact"))


def test_default_limit_is_half_the_physical_memory():
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory.memory_limit() == int(0.5 * physical)
