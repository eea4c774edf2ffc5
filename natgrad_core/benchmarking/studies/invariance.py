"""Reparameterization invariance: natural gradient versus its approximations and GD.

The gradient is a covector: under a linear reparameterization θ = T θ' it transforms as
∇' = Tᵀ ∇, while a step must transform as δ = T δ'. A preconditioner P gives the step
δ' = −η P'⁻¹ Tᵀ ∇, so the iterates of the two parameterizations stay the same function
for every step size iff P' = Tᵀ P T (Amari 1998; Martens 2020, "New insights and
perspectives on the natural gradient method", §12). The exact Fisher transforms so for
every T; K-FAC's factor A_l = E[ā_l ā_lᵀ] transforms so when T maps a layer's input
affinely, ā_l ↦ ā_l N_l, i.e. W̄_l = N_l W̄'_l (Martens & Grosse 2015, §10); the
diagonal only when T is diagonal; the identity (GD) never.

Three reparameterizations, each a layer-input map N = [[Cᵀ, 0], [c, 1]] (ā' = ā N):

(a) inputs x ↦ A x + b (A random, well conditioned) — a logistic model on new data;
(b) inputs x ↦ D x (D diagonal)                    — a logistic model on new data;
(c) an MLP's hidden units h ↦ C h + c folded into the next layer's weights, W̄_2 = N W̄'_2:
    the same function, new coordinates (the primed curvature is Tᵀ F T for the exact and
    diagonal Fisher, K-FAC's factor A_2' = Nᵀ A_2 N — what each computes on the primed
    network).

Each method runs fixed steps (no line search) from corresponding starts in both
parameterizations; the discrepancy at step k is max over samples |p_k − p'_k| of the
predicted probabilities. Damping is 0 (every curvature here is nonsingular), so exact NG
and K-FAC are invariant up to rounding; a damping λ > 0 would add λI, which is not of the
form Tᵀ (λI) T, and break it. The price of no damping: on the MLP, undamped exact NG
drives a hidden unit into saturation (|θ| > 10⁴ within ~25 steps at η = 0.05, then a
singular Fisher), so the NG step sizes are small (0.02) and the full run is 40 steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn import datasets

from ...curvature import DenseFisher, KFACFactors, kfac_factors
from ...curvature.kfac import KFAC
from ...models import MLP, LogisticModel, Objective
from . import Finding, StudyResult, register

METHODS = ("gd", "diag", "kfac", "exact")
"""Preconditioners: identity, diagonal exact Fisher, K-FAC (exact Fisher type), dense."""
LEARNING_RATES = {"gd": 0.5, "diag": 0.05, "kfac": 0.02, "exact": 0.02}
TRANSFORMS = ("affine inputs", "rescaled inputs", "affine hidden units")
INVARIANT_TOL = 1e-8
"""A max probability discrepancy below this is 'invariant' (float64 rounding grown over
the run); above VARIANT_TOL it is 'not invariant'."""
VARIANT_TOL = 1e-4
HIDDEN = 3


def _data():
    """Iris, versicolor vs virginica (not separable, so the logistic optimum is finite),
    standardized: X (100, 4), y in {0, 1}."""
    X, y = datasets.load_iris(return_X_y=True)
    keep = y > 0
    X, y = X[keep], (y[keep] == 2).astype(float)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _well_conditioned(rng, n, spread=2.0):
    """Q₁ diag(s) Q₂ with s log-uniform in [1/spread, spread]: condition number ≤ spread²."""
    q1, _ = np.linalg.qr(rng.normal(size=(n, n)))
    q2, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q1 @ np.diag(np.exp(rng.uniform(-np.log(spread), np.log(spread), n))) @ q2


def input_map(C, c):
    """N = [[Cᵀ, 0], [c, 1]]: the augmented input ā = [h, 1] becomes [h Cᵀ + c, 1] = ā N."""
    n = len(C)
    N = np.zeros((n + 1, n + 1))
    N[:n, :n] = C.T
    N[n, :n] = c
    N[n, n] = 1.0
    return N


def _full_map(model, maps):
    """T with θ = T θ' for per-layer input maps (W̄_l = N_l W̄'_l, row-major vec)."""
    blocks = [
        np.kron(maps.get(i, np.eye(lay.rows)), np.eye(lay.fan_out))
        for i, lay in enumerate(model.layers)
    ]
    T = np.zeros((model.n_params, model.n_params))
    for lay, B in zip(model.layers, blocks):
        T[lay.offset : lay.offset + lay.size, lay.offset : lay.offset + lay.size] = B
    return T


def _direction(objective, theta, T, maps, method):
    """The step direction in θ' coordinates, −P'⁻¹ Tᵀ ∇L(T θ')."""
    _, grad = objective.loss_and_grad(T @ theta)
    g = T.T @ grad
    if method == "gd":
        return -g
    if method == "kfac":
        A, G = kfac_factors(objective, T @ theta, "exact")
        A = [maps[i].T @ a @ maps[i] if i in maps else a for i, a in enumerate(A)]
        return -KFAC(objective, factors=KFACFactors(A, G)).solve(g, 0.0)
    F = T.T @ DenseFisher(objective, T @ theta, "exact").to_dense() @ T
    if method == "diag":
        return -g / np.diag(F)
    return -np.linalg.solve(F, g)


def _trajectory(objective, theta0, T, maps, method, n_steps):
    """Predicted probabilities (n_steps + 1, n_samples) along fixed-step descent."""
    theta, probs = theta0.copy(), []
    for k in range(n_steps + 1):
        probs.append(expit(objective.forward(T @ theta).outputs[:, 0]))
        if k < n_steps:
            theta = theta + LEARNING_RATES[method] * _direction(objective, theta, T, maps, method)
    return np.array(probs)


def _problems(rng):
    """(transform, original objective, primed objective, θ₀, θ₀', T, maps) per transform."""
    X, y = _data()
    d = X.shape[1]
    logistic = LogisticModel(d, 2)
    theta0 = rng.normal(scale=0.3, size=logistic.n_params)
    out = []
    A, b = _well_conditioned(rng, d), rng.normal(size=d)
    D = np.diag(np.exp(rng.uniform(-np.log(10.0), np.log(10.0), d)))
    for name, C, c in (("affine inputs", A, b), ("rescaled inputs", D, np.zeros(d))):
        # x' = x Cᵀ + c, so [x, 1] = [x', 1] N⁻¹ and W̄' = N⁻¹ W̄ gives the same logits.
        N_inv = np.linalg.inv(input_map(C, c))
        W = logistic.unpack(theta0)[0]
        primed = Objective(logistic, X @ C.T + c, y)
        eye = np.eye(logistic.n_params)
        out.append((name, Objective(logistic, X, y), primed, theta0, (N_inv @ W).ravel(), eye, {}))
    mlp = MLP(d, 2, (HIDDEN,), "tanh", "sigmoid")
    # Glorot × 3: tanh out of its linear range, where the hidden units' gradients are
    # nearly collinear and the Fisher nearly singular
    theta0 = 3.0 * mlp.init_params(rng)
    N = input_map(_well_conditioned(rng, HIDDEN), rng.normal(size=HIDDEN))
    maps = {1: N}
    T = _full_map(mlp, maps)
    objective = Objective(mlp, X, y)
    out.append(
        ("affine hidden units", objective, objective, theta0, np.linalg.solve(T, theta0), T, maps)
    )
    return out


@register(
    "invariance",
    "Reparameterization invariance of GD, diagonal NG, K-FAC and exact NG",
    "Amari (1998); Martens (2020) §12; Martens & Grosse (2015) §10",
    {
        "transform": ("the reparameterization", ""),
        "method": ("the preconditioner (fixed step, no damping)", ""),
        "step": ("iteration", ""),
        "discrepancy": ("max over samples of |p − p′|, predicted probabilities", ""),
    },
)
def run(quick: bool, seed: int) -> StudyResult:
    import matplotlib.pyplot as plt

    n_steps = 10 if quick else 40
    rng = np.random.default_rng(seed)
    rows = []
    for transform, obj, obj_p, theta0, theta0_p, T, maps in _problems(rng):
        eye = np.eye(len(theta0))
        for method in METHODS:
            p = _trajectory(obj, theta0, eye, {}, method, n_steps)
            q = _trajectory(obj_p, theta0_p, T, maps, method, n_steps)
            for k, gap in enumerate(np.abs(p - q).max(axis=1)):
                rows.append((transform, method, k, float(gap)))
    table = pd.DataFrame(rows, columns=["transform", "method", "step", "discrepancy"])
    worst = table.groupby(["transform", "method"])["discrepancy"].max()

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, transform in zip(axes, TRANSFORMS):
        part = table[table["transform"] == transform]
        for method in METHODS:
            r = part[part["method"] == method]
            ax.semilogy(r["step"], np.maximum(r["discrepancy"], 1e-18), label=method)
        ax.axhline(INVARIANT_TOL, color="grey", lw=0.6, ls=":")
        ax.set(title=transform, xlabel="step")
    axes[0].set_ylabel("max |p − p′| (floored at 1e-18)")
    axes[0].legend()
    fig.tight_layout()

    def gaps(method):
        return {t: float(worst[t, method]) for t in TRANSFORMS}

    def listing(numbers):
        return "; ".join(f"{t}: {v:.2e}" for t, v in numbers.items())

    findings = []
    for method, invariant_to, claim in (
        ("exact", TRANSFORMS, "exact natural gradient is invariant to all three"),
        ("kfac", TRANSFORMS, "K-FAC is invariant to affine maps of any layer's input"),
        ("diag", ("rescaled inputs",), "diagonal NG is invariant only to per-feature rescaling"),
        ("gd", (), "gradient descent is invariant to none"),
    ):
        numbers = gaps(method)
        held = all(
            (v < INVARIANT_TOL) if t in invariant_to else (v > VARIANT_TOL)
            for t, v in numbers.items()
        )
        findings.append(
            Finding(
                claim,
                f"{method}: max discrepancy over {n_steps} steps — {listing(numbers)} "
                f"(invariant below {INVARIANT_TOL:g}, not above {VARIANT_TOL:g})",
                numbers,
                held,
            )
        )
    settings = {
        "n_steps": n_steps,
        "learning_rates": LEARNING_RATES,
        "damping": 0.0,
        "data": "iris versicolor vs virginica, standardized, full batch (100 samples)",
        "models": "logistic (a, b); MLP 4-3-1 tanh (Glorot init × 3), sigmoid head (c)",
        "invariant_tol": INVARIANT_TOL,
        "variant_tol": VARIANT_TOL,
    }
    return StudyResult(table, fig, findings, settings)
