"""TRPO's step is a natural-gradient step: does its KL trust region hold the KL it targets?

TRPO (Schulman et al. 2015, §6 and Appendix C) solves F d = −∇L by 10 conjugate-gradient
iterations and scales the direction by β = √(2ε / dᵀFd), so that the quadratic model of the
KL divergence, ½ δᵀFδ, equals the target ε. The library has this rule (``step="kl"``,
:class:`~natgrad_core.optim.steps.KLTrustRegion`) and CG on exact Fisher-vector products
(``curvature="cg"``). This study runs it on full-batch classification problems and, at every
step, measures the actual KL between consecutive predictive distributions,
mean over the training rows of KL(p(·|x, θ_old) ‖ p(·|x, θ_new)) (the output distribution's
own ``kl``), against ε and against the quadratic model's ½ δᵀFδ. Fixed-rate natural
gradient (δ = η d, same direction) is the comparison whose per-step KL nothing controls.

As in TRPO, β is not capped (``max_step=None``) and the loss backtracking (β halved while
the loss does not decrease) stays on; CG stops at 10 iterations with damping 0.1 (TRPO's
``cg_damping``), so CG's iteration-cap warnings are expected and silenced here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..._validation import CGMaxIterWarning
from ...models import Objective
from ...optim import NaturalGradient
from ...optim.steps import FixedStep, KLTrustRegion, exact_products
from ..problems import get_problem
from . import Finding, StudyResult, register

EPSILONS = (1e-3, 1e-2, 1e-1)
LEARNING_RATES = (0.1, 1.0)
PROBLEMS = ("digits-logistic", "digits-mlp")
CG_ITERATIONS = 10
CG_DAMPING = 0.1
QUICK = {"steps": 12, "n_samples": 300}
FULL = {"steps": 80, "n_samples": None}
RATIO_BAND = (0.5, 2.0)
OFF_FACTOR = 2.0
OFF_FRACTION_MAX = 0.1
SMALL_EPS = 1e-2
BACKTRACKED = 0.99

COLUMNS = {
    "problem": ("problem name (natgrad list)", ""),
    "rule": ("step rule: kl (trust region) or fixed (δ = η d)", ""),
    "eps": ("KL target ε of the kl rule (empty for fixed)", "nats"),
    "learning_rate": ("η of the fixed rule (empty for kl)", ""),
    "step": ("step number, from 1", ""),
    "loss": ("training loss before the step", "nats"),
    "step_size": ("β (kl) or η (fixed) of the step taken", ""),
    "measured_kl": ("mean over rows of KL(p_old ‖ p_new) after the step", "nats"),
    "quadratic_kl": ("½ δᵀFδ, the quadratic model of that KL (exact Fisher)", "nats"),
}


def _rules():
    """(rule label, eps, learning rate, StepRule) for every rule in the study."""
    rules = [("kl", eps, np.nan, KLTrustRegion(max_kl=eps, max_step=None)) for eps in EPSILONS]
    rules += [("fixed", np.nan, lr, FixedStep(lr)) for lr in LEARNING_RATES]
    return rules


def _objective(problem: str, n_samples, seed: int):
    data = get_problem(problem).load(seed)
    X, y = data.X_train, data.y_train
    if n_samples is not None:
        rows = np.random.default_rng(seed).choice(X.shape[0], n_samples, replace=False)
        X, y = X[np.sort(rows)], y[np.sort(rows)]
    objective = Objective(data.model, X, y, data.alpha)
    return objective, data.model.init_params(seed)


def _trace(problem: str, rule, steps: int, n_samples, seed: int) -> list[dict]:
    """One run of ``steps`` natural-gradient steps with ``rule``; a row per step."""
    label, eps, lr, step_rule = rule
    objective, theta = _objective(problem, n_samples, seed)
    head = objective.model.head
    optimizer = NaturalGradient(
        "cg",
        damping=CG_DAMPING,
        step=step_rule,
        cg_maxiter=CG_ITERATIONS,
        cg_rtol=1e-10,
        cg_warm_start=False,
    )
    state = optimizer.init(objective, theta)
    rows = []
    for k in range(1, steps + 1):
        z_old = objective.forward(theta).outputs.copy()
        new_theta, state, info = optimizer.step(objective, theta, state)
        delta = new_theta - theta
        _, fisher_vp = exact_products(objective, theta)
        quadratic = 0.5 * float(delta @ fisher_vp(delta))
        measured = float(head.kl(z_old, objective.forward(new_theta).outputs).mean())
        rows.append(
            {
                "problem": problem,
                "rule": label,
                "eps": eps,
                "learning_rate": lr,
                "step": k,
                "loss": info.loss,
                "step_size": info.step_size,
                "measured_kl": measured,
                "quadratic_kl": quadratic,
            }
        )
        theta = new_theta
    return rows


def _figure(table: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(PROBLEMS), figsize=(5 * len(PROBLEMS), 7), squeeze=False)
    for j, problem in enumerate(PROBLEMS):
        runs = table[table.problem == problem]
        top, bottom = axes[0, j], axes[1, j]
        top.axhspan(*RATIO_BAND, color="0.9", label="[½, 2]")
        top.axhline(1.0, color="k", lw=0.8)
        for eps, run in runs[runs.rule == "kl"].groupby("eps"):
            top.plot(run.step, run.measured_kl / eps, marker=".", label=f"kl, ε={eps:g}")
        top.set_yscale("log")
        top.set_title(f"{problem}: KL trust region")
        top.set_ylabel("measured KL / ε")
        top.legend(fontsize=7)
        for lr, run in runs[runs.rule == "fixed"].groupby("learning_rate"):
            bottom.plot(run.step, run.measured_kl, marker=".", label=f"fixed, η={lr:g}")
        for eps in EPSILONS:
            bottom.axhline(eps, color="0.6", ls=":", lw=0.8)
        bottom.set_yscale("log")
        bottom.set_title(f"{problem}: fixed-rate NG (dotted: the ε of the kl rule)")
        bottom.set_xlabel("step")
        bottom.set_ylabel("measured KL (nats)")
        bottom.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _findings(table: pd.DataFrame) -> list[Finding]:
    kl = table[table.rule == "kl"]
    fixed = table[table.rule == "fixed"]
    medians = {
        f"{p} eps={e:g}": float(np.median(run.measured_kl / e))
        for (p, e), run in kl.groupby(["problem", "eps"])
    }
    lo, hi = RATIO_BAND
    inside = {k: lo <= v <= hi for k, v in medians.items()}
    first = Finding(
        f"TRPO's rule holds the per-step KL near its target: the median of measured KL / ε "
        f"is within [{lo:g}, {hi:g}] for every problem and ε",
        "median measured/target: "
        + ", ".join(f"{k}: {v:.3g}" for k, v in medians.items())
        + f"; {sum(inside.values())} of {len(inside)} within [{lo:g}, {hi:g}]",
        {"median_ratio": medians, "band": list(RATIO_BAND)},
        all(inside.values()),
    )
    ratio = kl.measured_kl / kl.quadratic_kl
    off = (ratio > OFF_FACTOR) | (ratio < 1 / OFF_FACTOR)
    off_by_eps = {f"eps={e:g}": float(off[kl.eps == e].mean()) for e in EPSILONS}
    small = [f"eps={e:g}" for e in EPSILONS if e <= SMALL_EPS]
    second = Finding(
        f"the quadratic model ½δᵀFδ is within {OFF_FACTOR:g}× of the measured KL on at least "
        f"{1 - OFF_FRACTION_MAX:.0%} of the kl rule's steps for ε ≤ 0.01",
        "fraction of steps off by more than "
        f"{OFF_FACTOR:g}×: " + ", ".join(f"{k}: {v:.3g}" for k, v in off_by_eps.items()),
        {"fraction_off": off_by_eps, "factor": OFF_FACTOR, "steps_per_eps": int(off.size)},
        all(off_by_eps[k] <= OFF_FRACTION_MAX for k in small),
    )
    spread = {
        f"{p} fixed lr={lr:g}": float(run.measured_kl.max() / run.measured_kl.min())
        for (p, lr), run in fixed.groupby(["problem", "learning_rate"])
    }
    kl_spread = {
        f"{p} kl eps={e:g}": float(run.measured_kl.max() / run.measured_kl.min())
        for (p, e), run in kl[kl.eps <= SMALL_EPS].groupby(["problem", "eps"])
    }
    third = Finding(
        "fixed-rate NG leaves the per-step KL uncontrolled: on each problem, the max/min of "
        f"its per-step KL over a run exceeds that of every KL-rule run with ε ≤ {SMALL_EPS:g}",
        "max/min measured KL per run: "
        + ", ".join(f"{k}: {v:.3g}" for k, v in {**spread, **kl_spread}.items()),
        {"fixed_spread": spread, "kl_spread": kl_spread},
        all(
            min(v for k, v in spread.items() if k.startswith(f"{p} "))
            > max(v for k, v in kl_spread.items() if k.startswith(f"{p} "))
            for p in PROBLEMS
        ),
    )
    backtracked = kl.quadratic_kl < BACKTRACKED * kl.eps
    share = {f"eps={e:g}": float(backtracked[kl.eps == e].mean()) for e in EPSILONS}
    full_steps = kl[~backtracked]
    full_medians = {
        f"{p} eps={e:g}": float(np.median(run.measured_kl / e))
        for (p, e), run in full_steps.groupby(["problem", "eps"])
    }
    fourth = Finding(
        "where the KL rule misses ε it is the loss backtracking (β halved), not the "
        "quadratic model: on the steps that kept the full β (½δᵀFδ ≥ "
        f"{BACKTRACKED:g} ε) the median measured KL / ε is within [{lo:g}, {hi:g}]",
        "share of steps backtracked: "
        + ", ".join(f"{k}: {v:.3g}" for k, v in share.items())
        + "; median measured/target on full steps: "
        + ", ".join(f"{k}: {v:.3g}" for k, v in full_medians.items()),
        {"backtracked_share": share, "full_step_median_ratio": full_medians},
        all(lo <= v <= hi for v in full_medians.values()),
    )
    return [first, second, third, fourth]


@register(
    "trpo-kl",
    "TRPO's KL trust region: measured vs targeted KL per natural-gradient step",
    "Schulman et al. (2015), Trust Region Policy Optimization, §6 and Appendix C",
    COLUMNS,
)
def run(quick: bool, seed: int) -> StudyResult:
    size = QUICK if quick else FULL
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CGMaxIterWarning)
        for problem in PROBLEMS:
            for rule in _rules():
                rows += _trace(problem, rule, size["steps"], size["n_samples"], seed)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    settings = {
        **size,
        "problems": list(PROBLEMS),
        "epsilons": list(EPSILONS),
        "learning_rates": list(LEARNING_RATES),
        "curvature": "cg",
        "cg_iterations": CG_ITERATIONS,
        "cg_damping": CG_DAMPING,
        "kl_max_step": None,
        "fisher": "exact",
    }
    return StudyResult(table, _figure(table), _findings(table), settings)
