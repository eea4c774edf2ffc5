"""Plateaus: natural gradient against SGD in on-line learning of a soft committee machine.

Amari (1998), "Natural gradient works efficiently in learning", Neural Comput. 10, 251;
Rattray, Saad & Amari (1998), "Natural gradient descent for on-line learning", Phys. Rev.
Lett. 81, 5461. A student soft committee machine (K = 2 erf units, output weights fixed
to 1) learns a teacher of the same shape (M = 2, orthonormal: T = I) from one fresh
Gaussian example per step (:class:`~natgrad_core.models.committee.TeacherStream`);
``α`` = examples / N. Each step computes the loss and gradient of that one example with
:class:`~natgrad_core.models.Objective` and moves the first-layer weights ``W``:

* SGD:              ``W ← W − η ∇``                (Saad & Solla's η in these units)
* natural gradient: ``W ← W − (η/N) F(W)⁻¹ ∇``     (Rattray, Saad & Amari's η)

with ``F`` the exact Fisher of the regression model with unit Gaussian noise, ``E_u[Jᵀ J]``
over inputs, computed analytically (:func:`~natgrad_core.models.committee.committee_fisher`,
no sampling) and solved in O(N)
(:func:`~natgrad_core.models.committee.committee_natural_gradient`). The generalization
error ``ε_g`` is the closed form of Saad & Solla (1995).

The symmetric plateau is the stretch where both students imitate the teachers' mean
and the error barely moves; as η → 0 it is the fixed point ``Q = C = 1/3``, ``R = 1/√6``
of K = M = 2 (Saad & Solla 1995), at ``ε_sym`` below, and at finite η it sits higher
(SGD at η = 2, N = 100: ε_g ≈ 0.06 ≈ 5 ε_sym), so no fixed error level marks it. A run
*enters* it at the end of the initial descent, when ``ε_g`` first falls below
``ENTER · ε_g(0)`` (the same level for both methods: a seed fixes the initial student),
and *leaves* it when the units specialize: ``s = ½ |r₁₁ − r₁₂ − r₂₁ + r₂₂| ≥ SPECIALIZED``
with the normalized overlaps ``r_in = R_in / √(Q_ii T_nn)`` (s is 0 for identical units,
1 for units that each copied a different teacher). The plateau length is leave − enter
(0 when the units specialize first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...models import Objective
from ...models.committee import (
    TeacherStream,
    committee_natural_gradient,
    committee_overlaps,
    committee_params,
    generalization_error,
    soft_committee,
)
from . import Finding, StudyResult, register

N_HIDDEN = 2
TARGET = 3e-3
"""ε_g target of the α-to-target measure."""
INIT_STD = 0.3
"""Standard deviation of the student's initial weights (Q ≈ 0.09, R ≈ INIT_STD/√N)."""
SPECIALIZED = 0.5
"""Specialization s at which a run has left the symmetric plateau."""
RECORDS_PER_ALPHA = 10

EPS_SYM = generalization_error(np.full((2, 2), 1 / 3), np.full((2, 2), 1 / np.sqrt(6)), np.eye(2))
"""ε_g at the symmetric fixed point of K = M = 2, T = I (Saad & Solla 1995)."""

ENTER = 0.2
"""A run enters the plateau once ε_g < ENTER · ε_g(0): the initial descent has removed 80%
of the initial error."""

SIZES = {
    False: {
        "n_features": 100,
        "seeds": 5,
        "alpha_max": 250.0,
        "eta": {
            "sgd": [0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0],
            "natural gradient": [0.05, 0.1, 0.2, 0.3, 0.4],
        },
    },
    True: {
        "n_features": 20,
        "seeds": 2,
        "alpha_max": 100.0,
        "eta": {"sgd": [0.3, 1.0, 2.0], "natural gradient": [0.1, 0.3]},
    },
}
METHODS = ("sgd", "natural gradient")


def specialization(Q, R, T) -> float:
    """``s = ½ |r₁₁ − r₁₂ − r₂₁ + r₂₂|`` of the normalized overlaps (K = M = 2)."""
    r = R / np.sqrt(np.outer(np.diag(Q), np.diag(T)))
    return 0.5 * abs(r[0, 0] - r[0, 1] - r[1, 0] + r[1, 1])


def train(method: str, eta: float, n_features: int, alpha_max: float, seed: int):
    """One on-line run; returns the record (α, ε_g, s) every ``1/RECORDS_PER_ALPHA`` of α,
    stopping at ``alpha_max``, once ε_g < TARGET, or once ε_g > 10 (diverged)."""
    rng = np.random.default_rng([seed, 0])
    n = n_features
    B = np.sqrt(n) * np.linalg.qr(rng.standard_normal((n, N_HIDDEN)))[0]
    W = INIT_STD * np.random.default_rng([seed, 1]).standard_normal((n, N_HIDDEN))
    stream = TeacherStream(B, [seed, 2])
    model = soft_committee(n, N_HIDDEN)
    theta = committee_params(model, W)
    n_w = n * N_HIDDEN
    every = max(1, n // RECORDS_PER_ALPHA)
    rows = []
    for step in range(0, int(alpha_max * n) + 1, every):
        W = theta[:n_w].reshape(n, N_HIDDEN)
        Q, R, T = committee_overlaps(W, B)
        eps = generalization_error(Q, R, T) if np.isfinite(Q).all() else np.inf
        spec = specialization(Q, R, T) if np.isfinite(eps) else np.nan
        rows.append((step / n, eps, spec))
        if not eps < 10.0 or eps < TARGET:
            break
        U, y = stream.draw(every)
        objective = Objective(model, U, y)
        for t in range(every):  # one fresh example per step: a loop over steps
            _, grad = objective.batch(slice(t, t + 1)).loss_and_grad(theta)
            g = grad[:n_w]
            if method == "natural gradient":
                g = committee_natural_gradient(theta[:n_w].reshape(n, N_HIDDEN), g) / n
            theta = np.concatenate([theta[:n_w] - eta * g, theta[n_w:]])
    return np.array(rows)


def _first_alpha(alpha, mask) -> float:
    """The first α where ``mask`` holds, inf if never (censored at the run's end)."""
    hits = np.flatnonzero(mask)
    return float(alpha[hits[0]]) if hits.size else np.inf


def measure(record) -> tuple[float, float]:
    """(α to ε_g < TARGET, plateau length) of a :func:`train` record."""
    alpha, eps, spec = record.T
    to_target = _first_alpha(alpha, eps < TARGET)
    enter = _first_alpha(alpha, eps < ENTER * eps[0])
    leave = _first_alpha(alpha, spec >= SPECIALIZED)
    if not np.isfinite(leave):
        return to_target, np.inf
    return to_target, max(0.0, leave - enter) if np.isfinite(enter) else 0.0


def _best(table: pd.DataFrame) -> dict:
    """Per method: the η with the smallest median α to target (ties: the smaller η), its
    median α to target and median plateau length."""
    out = {}
    for method in METHODS:
        rows = table[table["method"] == method]
        med = rows.groupby("eta")["alpha_to_target"].median().sort_index()
        eta = float(med.idxmin())
        at = rows[rows["eta"] == eta]
        out[method] = {
            "eta": eta,
            "alpha": float(med.loc[eta]),
            "plateau": float(at["plateau_length"].median()),
        }
    return out


def _panel(ax, curves, chosen, title):
    """ε_g against α of every seed's run at ``chosen[method]`` (one η per method)."""
    colors = {"sgd": "tab:blue", "natural gradient": "tab:red"}
    first = min(s for (_, _, s) in curves)
    for (method, eta, seed), record in curves.items():
        if eta != chosen.get(method):
            continue
        label = f"{method}, η = {eta:g}" if seed == first else None
        ax.semilogy(
            record[:, 0], record[:, 1], color=colors[method], lw=0.9, alpha=0.8, label=label
        )
    ax.axhline(EPS_SYM, color="0.4", ls=":", lw=1, label="symmetric plateau ε_sym (η → 0)")
    ax.axhline(TARGET, color="0.4", ls="--", lw=1, label=f"target {TARGET:g}")
    ax.set_xlabel("α = examples / N")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def _figure(curves, best, equal_eta, n_features):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    _panel(axes[0], curves, {m: b["eta"] for m, b in best.items()}, "each method at its best η")
    if equal_eta is not None:
        chosen = dict.fromkeys(METHODS, equal_eta)
        _panel(axes[1], curves, chosen, f"the same η = {equal_eta:g}")
    axes[0].set_ylabel("generalization error ε_g")
    fig.suptitle(f"On-line learning, soft committee machine K = M = 2, N = {n_features}")
    fig.tight_layout()
    return fig


@register(
    "plateaus",
    "Natural gradient shortens the symmetric plateau of on-line learning",
    "Amari (1998), Neural Comput. 10, 251; Rattray, Saad & Amari (1998), Phys. Rev. Lett. "
    "81, 5461 — soft committee machine K = M = 2, on-line SGD vs natural gradient with the "
    "exact Fisher",
    {
        "method": ("update rule: sgd or natural gradient (analytic exact Fisher)", ""),
        "eta": ("learning rate η (SGD: W ← W − η∇; NG: W ← W − (η/N) F⁻¹∇)", ""),
        "seed": ("run seed (teacher, initial student, input stream)", ""),
        "alpha_to_target": (
            f"α = examples / N at which ε_g first fell below {TARGET:g}; "
            "inf: not within the budget",
            "examples / N",
        ),
        "plateau_length": (
            f"α from ε_g < {ENTER:g}·ε_g(0) (end of the initial descent) to specialization "
            f"s ≥ {SPECIALIZED:g} "
            "(0 if it specialized first; inf: never specialized)",
            "examples / N",
        ),
    },
)
def run(quick: bool, seed: int) -> StudyResult:
    size = SIZES[bool(quick)]
    n, alpha_max = size["n_features"], size["alpha_max"]
    seeds = [seed + i for i in range(size["seeds"])]
    rows, curves = [], {}
    for method in METHODS:
        for eta in size["eta"][method]:
            for s in seeds:
                record = train(method, eta, n, alpha_max, s)
                curves[method, eta, s] = record
                rows.append((method, eta, s, *measure(record)))
    table = pd.DataFrame(
        rows, columns=["method", "eta", "seed", "alpha_to_target", "plateau_length"]
    )
    best = _best(table)
    sgd, ng = best["sgd"], best["natural gradient"]
    numbers = {
        "sgd_eta": sgd["eta"],
        "natural_gradient_eta": ng["eta"],
        "sgd_median_alpha": sgd["alpha"],
        "natural_gradient_median_alpha": ng["alpha"],
    }
    fewer = Finding(
        "natural gradient reaches the target in fewer examples than SGD, each at its best η",
        f"median α to ε_g < {TARGET:g} over {len(seeds)} seeds: natural gradient "
        f"{ng['alpha']:.1f} (η = {ng['eta']:g}) vs SGD {sgd['alpha']:.1f} (η = {sgd['eta']:g}), "
        f"a ratio of {sgd['alpha'] / ng['alpha']:.2f}",
        numbers,
        bool(ng["alpha"] < sgd["alpha"]),
    )
    plateau_numbers = {
        "sgd_eta": sgd["eta"],
        "natural_gradient_eta": ng["eta"],
        "sgd_median_plateau": sgd["plateau"],
        "natural_gradient_median_plateau": ng["plateau"],
    }
    shorter = Finding(
        "the symmetric plateau is shorter with natural gradient, each at its best η",
        f"median plateau length over {len(seeds)} seeds: natural gradient "
        f"{ng['plateau']:.1f} vs SGD {sgd['plateau']:.1f} (α units)",
        plateau_numbers,
        bool(ng["plateau"] < sgd["plateau"]),
    )
    settings = {
        "n_features": n,
        "n_hidden": N_HIDDEN,
        "teacher": "M = 2, orthonormal, T = I",
        "init_std": INIT_STD,
        "alpha_max": alpha_max,
        "eta_grid": size["eta"],
        "seeds": seeds,
        "target": TARGET,
        "eps_sym": EPS_SYM,
        "enter_fraction_of_initial_error": ENTER,
        "specialized": SPECIALIZED,
        "fisher": "exact, analytic (committee_fisher), no sampling",
    }
    shared = sorted(set(size["eta"]["sgd"]) & set(size["eta"]["natural gradient"]))
    same = {
        eta: {
            m: float(
                table[(table["method"] == m) & (table["eta"] == eta)]["plateau_length"].median()
            )
            for m in METHODS
        }
        for eta in shared
    }
    same_eta = Finding(
        "at the same η, SGD stays on the symmetric plateau longer than natural gradient",
        "median plateau length at the same η: "
        + "; ".join(
            f"η = {eta:g}: natural gradient {v['natural gradient']:.1f} vs SGD {v['sgd']:.1f}"
            for eta, v in same.items()
        )
        + " (α units; inf: never specialized within the budget)",
        {f"eta_{eta:g}": v for eta, v in same.items()},
        bool(shared) and all(v["natural gradient"] < v["sgd"] for v in same.values()),
    )
    equal_eta = max(shared) if shared else None
    figure = _figure(curves, best, equal_eta, n)
    return StudyResult(table, figure, [fewer, shorter, same_eta], settings)
