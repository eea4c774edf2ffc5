"""The empirical Fisher as a preconditioner: Kunstner, Balles & Hennig (2019).

Three measurements, each with the library:

1. **Optimization** (their §5, Fig. 5) — logistic regression on breast_cancer and wine
   (the bundled problems, standardized features, L2 ``alpha``): gradient descent (GD),
   the empirical-Fisher step ``−(EF + λI)⁻¹∇L`` (EF) and the natural-gradient step
   ``−(F + λI)⁻¹∇L`` (NG), dense curvature, fixed step, ``n_iter`` iterations, each method
   at the best point of a learning-rate × damping grid (GD: learning rates only). Measures:
   the final suboptimality ``L(θ) − L(θ*)`` (θ* the exact Newton optimum) and the first
   iteration with ``L − L* ≤ TARGET``. Best: the smallest final suboptimality, where values
   below ``TIE · (1 + |L*|)`` (the optimum to float64 resolution) tie and ties go to the
   fewest iterations to the target.
2. **Misalignment** — along the selected EF run, the cosine between the EF direction and the
   NG direction at the same iterate and damping, ``cos(−(EF+λI)⁻¹∇L, −(F+λI)⁻¹∇L)``, over
   the iterations whose gradient ‖∇L‖_∞ exceeds ``COSINE_MIN_GRAD`` (below it the two
   directions are rounding noise).
3. **Vector fields** (their Fig. 1) — a two-parameter linear regression y ≈ w·x + b with a
   unit-variance Gaussian model and x = 1 + z, z ~ N(0, 1) (uncentred, so GD's field is
   bent), on data the model matches (y = 2x + 1 + ε, ε ~ N(0, 1)) and on data it does not
   (a quadratic trend: y = 2x + 1 + (z² − 1) + ε/2). On a grid of
   (w, b) around θ* (closed-form least squares), the cosine of each method's direction
   with the direction to the optimum θ* − θ. For a Gaussian model F = X̄ᵀX̄/N does not
   depend on θ and L is quadratic, so −F⁻¹∇L = θ* − θ exactly; EF = Σ rₙ² x̄ₙx̄ₙᵀ/N
   reweights samples by their squared residuals and bends the field.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..._validation import SingularCurvatureWarning
from ...curvature import DenseFisher
from ...models import MLP, Objective
from ...optim import make_optimizer, minimize
from ..problems import PROBLEMS
from ..reference import reference_solution
from . import Finding, StudyResult, cosine, register

DATASETS = ("breast_cancer", "wine")
METHODS = {"GD": "gradient descent", "EF": "empirical Fisher", "NG": "Fisher"}
FISHER = {"EF": "empirical", "NG": "exact"}
FIELD_LABELS = {"GD": "−∇L", "EF": "−EF⁻¹∇L", "NG": "−F⁻¹∇L"}
COSINE_MIN_GRAD = 1e-8
"""Iterates with ‖∇L‖_∞ at or below this are left out of the EF–NG cosine (noise there)."""
LINREG_CASES = ("linreg-well-specified", "linreg-misspecified")
NG_TO_OPTIMUM_TOL = 1e-9
"""NG "points to the optimum" when every cosine with θ* − θ is within this of 1."""
EF_DISTORTED = 0.9
"""EF's field is "distorted" when some cosine with θ* − θ falls below this."""
TIE = 1e-12
"""Suboptimalities below TIE · (1 + |L*|) are the optimum to float64 resolution: ties."""
TARGET = 1e-8
"""The suboptimality L − L* whose first iteration ``iterations_to_target`` records."""

COLUMNS = {
    "dataset": ("problem (breast_cancer, wine) or linear-regression case", ""),
    "method": ("GD, EF (empirical-Fisher step) or NG (Fisher step)", ""),
    "learning_rate": ("fixed step size (empty for the vector fields)", ""),
    "damping": ("Tikhonov damping λ (empty for GD)", ""),
    "final_suboptimality": ("L(θ) − L(θ*) after the last iteration (inf: diverged)", ""),
    "iterations_to_target": (f"first iteration with L − L* ≤ {TARGET:g} (inf: never)", ""),
    "selected": (
        "best of its method's grid on its dataset: smallest final L − L*, ties at the "
        "optimum (below 1e-12 · (1 + |L*|)) to the fewest iterations to the target",
        "",
    ),
    "cos_ef_ng_median": ("median cosine(EF direction, NG direction) along the run", ""),
    "cos_ef_ng_min": ("smallest cosine(EF direction, NG direction) along the run", ""),
    "cos_ef_ng_points": ("iterates the EF–NG cosines are taken over", ""),
    "cos_to_optimum_median": ("median cosine(field direction, θ* − θ) over the grid", ""),
    "cos_to_optimum_min": ("smallest cosine(field direction, θ* − θ) over the grid", ""),
}


def _direction(objective, theta, grad, method, damping):
    if method == "GD":
        return -grad
    return -DenseFisher(objective, theta, FISHER[method]).solve(grad, damping)


def _optimizer(method, learning_rate, damping):
    if method == "GD":
        return make_optimizer("gd", learning_rate=learning_rate, step="fixed")
    return make_optimizer(
        "exact", fisher=FISHER[method], step="fixed", learning_rate=learning_rate, damping=damping
    )


def _selection_key(final_suboptimality: float, iterations_to_target: float, tie: float):
    """The order "best of grid" uses: the smallest final L − L*, where every value at or
    below ``tie`` (the optimum to float64 resolution) counts as 0 and such ties go to the
    run that reached ``TARGET`` in the fewest iterations."""
    return (final_suboptimality if final_suboptimality > tie else 0.0, iterations_to_target)


def _grid_runs(data, f_star, learning_rates, dampings, n_iter):
    """One row per (method, learning rate, damping); the curves of each method's best."""
    tie = TIE * (1 + abs(f_star))
    rows, curves = [], {}
    for method in METHODS:
        best = None
        for lr in learning_rates:
            for damping in [np.nan] if method == "GD" else dampings:
                res = minimize(
                    data.model,
                    data.X_train,
                    data.y_train,
                    _optimizer(method, lr, damping),
                    alpha=data.alpha,
                    max_iter=n_iter,
                    tol=0.0,
                )
                gap = res.loss - f_star if res.status != "diverged" else np.inf
                gap = gap if np.isfinite(gap) else np.inf
                history = res.history
                reached = history["iteration"][history["loss"] - f_star <= TARGET]
                row = {
                    "method": method,
                    "learning_rate": float(lr),
                    "damping": float(damping),
                    "final_suboptimality": float(gap),
                    "iterations_to_target": float(reached.min()) if len(reached) else np.inf,
                    "selected": False,
                }
                rows.append(row)
                key = _selection_key(gap, row["iterations_to_target"], tie)
                if best is None or key < best[0]:
                    best = (key, history["loss"].to_numpy() - f_star, row)
        best[2]["selected"] = True
        curves[method] = best[1]
    return rows, curves


def _ef_ng_cosines(data, learning_rate, damping, n_iter):
    """Cosines of the EF and NG directions at every iterate of the EF run."""
    objective = Objective(data.model, data.X_train, data.y_train, data.alpha)
    cosines = []

    def record(theta, row):
        if row["grad_norm"] > COSINE_MIN_GRAD:
            grad = objective.loss_and_grad(theta)[1]
            ef = _direction(objective, theta, grad, "EF", damping)
            ng = _direction(objective, theta, grad, "NG", damping)
            cosines.append(cosine(ef, ng))

    minimize(
        data.model,
        data.X_train,
        data.y_train,
        _optimizer("EF", learning_rate, damping),
        alpha=data.alpha,
        max_iter=n_iter,
        tol=0.0,
        callback=record,
    )
    return np.array(cosines)


def linreg_data(case: str, n_samples: int, seed: int):
    """(x, y) of a linear-regression case (module doc), shape (n_samples, 1) each."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, LINREG_CASES.index(case)]))
    z = rng.standard_normal(n_samples)
    noise = rng.standard_normal(n_samples)
    x = 1 + z  # uncentred: w and b correlate, so the loss is anisotropic in (w, b)
    if case == "linreg-well-specified":
        y = 2 * x + 1 + noise
    else:
        y = 2 * x + 1 + (z**2 - 1) + 0.5 * noise
    return x[:, None], y[:, None]


def _vector_field(case, n_samples, n_grid, seed):
    """Directions of GD, NG and EF on a (w, b) grid around θ*, and their cosines with θ* − θ."""
    X, y = linreg_data(case, n_samples, seed)
    model = MLP(1, 1, (), "identity", head="gaussian")
    objective = Objective(model, X, y)
    design = np.column_stack([X[:, 0], np.ones(n_samples)])  # θ = (w, b), the model's order
    theta_star = np.linalg.lstsq(design, y[:, 0], rcond=None)[0]
    # an even number of points per axis: the grid never lands on θ*, where ∇L = 0
    offsets = np.linspace(-3.0, 3.0, n_grid)
    W, B = np.meshgrid(theta_star[0] + offsets, theta_star[1] + offsets)
    points = np.column_stack([W.ravel(), B.ravel()])
    directions = {m: np.empty_like(points) for m in METHODS}
    cosines = {m: np.empty(len(points)) for m in METHODS}
    for i, theta in enumerate(points):  # grid points in parameter space, not samples
        grad = objective.loss_and_grad(theta)[1]
        for method in METHODS:
            d = _direction(objective, theta, grad, method, 0.0)
            directions[method][i] = d
            cosines[method][i] = cosine(d, theta_star - theta)
    return {
        "X": X,
        "y": y,
        "theta_star": theta_star,
        "points": points,
        "directions": directions,
        "cosines": cosines,
    }


def _settings(quick: bool, seed: int) -> dict:
    if quick:
        learning_rates, dampings, n_grid = [1e-2, 1e-1, 1.0, 10.0], [1e-6, 1e-3, 1.0], 8
    else:
        learning_rates = list(10.0 ** np.arange(-3.0, 1.51, 0.5))
        dampings, n_grid = [1e-8, 1e-6, 1e-4, 1e-2, 1.0], 14
    return {
        "seed": seed,
        "n_iter": 100,
        "learning_rates": [float(v) for v in learning_rates],
        "dampings": [float(v) for v in dampings],
        "linreg_n_samples": 100,
        "linreg_grid": n_grid,
        "cosine_min_grad": COSINE_MIN_GRAD,
        "tie": TIE,
    }


@register(
    "empirical-fisher",
    "Empirical Fisher vs Fisher preconditioning",
    "Kunstner, Balles & Hennig (2019), Limitations of the empirical Fisher approximation "
    "for natural gradient descent, NeurIPS; Fig. 1 (vector fields) and §5 (optimization)",
    COLUMNS,
)
def run(quick: bool, seed: int) -> StudyResult:
    settings = _settings(quick, seed)
    rows, curves, cosines, f_stars = [], {}, {}, {}
    with warnings.catch_warnings():
        # divergent grid points and near-singular EF are part of the grid, recorded as inf
        warnings.simplefilter("ignore", SingularCurvatureWarning)
        warnings.simplefilter("ignore", UserWarning)
        for dataset in DATASETS:
            data = PROBLEMS[f"{dataset}-logistic"].load(seed)
            f_stars[dataset] = reference_solution(data).loss
            grid, curves[dataset] = _grid_runs(
                data,
                f_stars[dataset],
                settings["learning_rates"],
                settings["dampings"],
                settings["n_iter"],
            )
            for row in grid:
                row["dataset"] = dataset
                if row["method"] == "EF" and row["selected"]:
                    c = _ef_ng_cosines(
                        data, row["learning_rate"], row["damping"], settings["n_iter"]
                    )
                    cosines[dataset] = c
                    row["cos_ef_ng_median"] = float(np.median(c))
                    row["cos_ef_ng_min"] = float(c.min())
                    row["cos_ef_ng_points"] = int(c.size)
            rows.extend(grid)
        fields = {
            case: _vector_field(case, settings["linreg_n_samples"], settings["linreg_grid"], seed)
            for case in LINREG_CASES
        }
    for case, field in fields.items():
        for method in METHODS:
            c = field["cosines"][method]
            rows.append(
                {
                    "dataset": case,
                    "method": method,
                    "damping": 0.0 if method != "GD" else np.nan,
                    "selected": False,
                    "cos_to_optimum_median": float(np.median(c)),
                    "cos_to_optimum_min": float(c.min()),
                }
            )
    table = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    table["selected"] = table["selected"].astype(bool)
    findings = _findings(table, f_stars)
    settings["f_star"] = {k: float(v) for k, v in f_stars.items()}
    figure = _figure(fields, curves, cosines)
    return StudyResult(table, figure, findings, settings)


def _findings(table, f_stars) -> list[Finding]:
    findings = []
    best = table[table["selected"]].set_index(["dataset", "method"])["final_suboptimality"]
    numbers, order_held = {}, True
    for dataset in DATASETS:
        tie = TIE * (1 + abs(f_stars[dataset]))
        gd, ef, ng = (float(best[dataset, m]) for m in ("GD", "EF", "NG"))
        numbers.update({f"{dataset}_GD": gd, f"{dataset}_EF": ef, f"{dataset}_NG": ng})
        numbers[f"{dataset}_tie"] = tie
        # "a < b" needs b above float64 resolution of L*: two runs at the optimum tie
        order_held &= ng < ef and ef > tie and ef < gd and gd > tie
    text = "; ".join(
        f"{d}: NG {numbers[f'{d}_NG']:.2g}, EF {numbers[f'{d}_EF']:.2g}, "
        f"GD {numbers[f'{d}_GD']:.2g} (ties below {numbers[f'{d}_tie']:.1g})"
        for d in DATASETS
    )
    findings.append(
        Finding(
            "best-of-grid final suboptimality orders NG < EF < GD on both datasets",
            f"final L − L* of each method's best: {text}",
            numbers,
            bool(order_held),
        )
    )
    logistic = table[table["dataset"].isin(DATASETS)]
    fastest = logistic.groupby(["dataset", "method"])["iterations_to_target"].min()
    numbers = {f"{d}_{m}": float(fastest[d, m]) for d in DATASETS for m in METHODS}
    text = "; ".join(
        f"{d}: NG {numbers[f'{d}_NG']:g}, EF {numbers[f'{d}_EF']:g}, GD {numbers[f'{d}_GD']:g}"
        for d in DATASETS
    )
    findings.append(
        Finding(
            f"the fewest iterations to L − L* ≤ {TARGET:g} over the grid order NG < EF < GD "
            "on both datasets (inf: never within the budget)",
            f"fewest iterations to L − L* ≤ {TARGET:g}: {text}",
            numbers,
            all(numbers[f"{d}_NG"] < numbers[f"{d}_EF"] < numbers[f"{d}_GD"] for d in DATASETS),
        )
    )
    ef_rows = table[(table["method"] == "EF") & table["selected"]].set_index("dataset")
    numbers = {}
    for dataset in DATASETS:
        numbers[f"{dataset}_median"] = float(ef_rows.loc[dataset, "cos_ef_ng_median"])
        numbers[f"{dataset}_min"] = float(ef_rows.loc[dataset, "cos_ef_ng_min"])
        numbers[f"{dataset}_points"] = int(ef_rows.loc[dataset, "cos_ef_ng_points"])
    text = "; ".join(
        f"{d}: median {numbers[f'{d}_median']:.3f}, min {numbers[f'{d}_min']:.3f} "
        f"over {numbers[f'{d}_points']} iterates"
        for d in DATASETS
    )
    findings.append(
        Finding(
            f"EF steps are misaligned with NG steps (some cosine < {EF_DISTORTED}) along the "
            "selected EF run on both datasets",
            f"cosine(EF direction, NG direction) along the selected EF run: {text}",
            numbers,
            all(numbers[f"{d}_min"] < EF_DISTORTED for d in DATASETS),
        )
    )
    fields = table[table["dataset"].isin(LINREG_CASES)].set_index(["dataset", "method"])
    numbers = {}
    for case in LINREG_CASES:
        for method in ("NG", "EF"):
            for stat in ("median", "min"):
                numbers[f"{case}_{method}_{stat}"] = float(
                    fields.loc[(case, method), f"cos_to_optimum_{stat}"]
                )
    ng_held = all(numbers[f"{c}_NG_min"] >= 1 - NG_TO_OPTIMUM_TOL for c in LINREG_CASES)
    ef_held = numbers["linreg-misspecified_EF_min"] < EF_DISTORTED
    text = "; ".join(
        f"{c}: NG min {numbers[f'{c}_NG_min']:.12f}, EF median "
        f"{numbers[f'{c}_EF_median']:.3f}, EF min {numbers[f'{c}_EF_min']:.3f}"
        for c in LINREG_CASES
    )
    findings.append(
        Finding(
            f"linear regression: the NG field points at the optimum (cosine with θ* − θ "
            f"≥ 1 − {NG_TO_OPTIMUM_TOL:g} everywhere) while the misspecified case's EF field "
            f"is distorted away from it (some cosine < {EF_DISTORTED})",
            f"cosine of each field with θ* − θ over the grid: {text}",
            numbers,
            bool(ng_held and ef_held),
        )
    )
    return findings


def _figure(fields, curves, cosines):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(13, 12), layout="constrained")
    for r, (case, field) in enumerate(fields.items()):
        P, star = field["points"], field["theta_star"]
        for c, method in enumerate(METHODS):
            ax = axes[r, c]
            d = field["directions"][method]
            u = d / np.linalg.norm(d, axis=1, keepdims=True)
            arrows = ax.quiver(
                P[:, 0], P[:, 1], u[:, 0], u[:, 1], field["cosines"][method], cmap="viridis"
            )
            arrows.set_clim(-1.0, 1.0)
            ax.plot(*star, "r*", ms=12)
            ax.set_title(f"{case}: {FIELD_LABELS[method]}", fontsize=9)
            ax.set_xlabel("w")
            ax.set_ylabel("b")
    for c, dataset in enumerate(DATASETS):
        ax = axes[2, c]
        for method, curve in curves[dataset].items():
            ax.semilogy(np.maximum(curve, 1e-16), label=method)
        ax.set_title(f"{dataset}-logistic, best of grid")
        ax.set_xlabel("iteration")
        ax.set_ylabel("L − L* (floored at 1e-16)")
        ax.legend()
    fig.colorbar(arrows, ax=axes[:2, :], label="cosine with θ* − θ", shrink=0.6)
    ax = axes[2, 2]
    for dataset, c in cosines.items():
        ax.plot(c, label=dataset)
    ax.set_title("cos(EF direction, NG direction), selected EF run")
    ax.set_xlabel(f"iterate (‖∇L‖∞ > {COSINE_MIN_GRAD:g})")
    ax.set_ylabel("cosine")
    ax.legend()
    fig.suptitle("Empirical Fisher vs Fisher (Kunstner, Balles & Hennig 2019); arrows: unit")
    return fig
