"""The empirical-Fisher study (quick size): its findings recomputed from its table."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from natgrad_core.benchmarking.problems import PROBLEMS
from natgrad_core.benchmarking.studies import get_study
from natgrad_core.benchmarking.studies.empirical_fisher import linreg_data

DATASETS = ("breast_cancer", "wine")
CASES = ("linreg-well-specified", "linreg-misspecified")
TIE_REL = 1e-12  # the study's stated tie: L − L* below 1e-12 · (1 + |L*|)


@pytest.fixture(scope="module")
def result():
    res = get_study("empirical-fisher").run(True, 0)
    yield res
    plt.close(res.figure)


def _finding(result, start):
    (finding,) = [f for f in result.findings if f.claim.startswith(start)]
    return finding


def test_the_best_of_grid_is_the_smallest_final_suboptimality(result):
    """Selected: the smallest final L − L*, values at or below the tie counting as 0 and
    ties going to the fewest iterations to the target."""
    table = result.table
    finding = _finding(result, "best-of-grid")
    order = True
    for dataset in DATASETS:
        rows = table[table["dataset"] == dataset]
        tie = TIE_REL * (1 + result.settings["f_star"][dataset])
        best = {}
        for method in ("GD", "EF", "NG"):
            runs = rows[rows["method"] == method]
            assert runs["selected"].sum() == 1
            final = runs["final_suboptimality"].to_numpy()
            clipped = np.where(final <= tie, 0.0, final)
            first = np.lexsort((runs["iterations_to_target"].to_numpy(), clipped))[0]
            assert runs["selected"].to_numpy()[first]
            best[method] = final[first]
            assert clipped[first] == clipped.min()
            assert finding.numbers[f"{dataset}_{method}"] == best[method]
            assert f"{best[method]:.2g}" in finding.statement
        order &= best["NG"] < best["EF"] and best["EF"] > tie and best["GD"] > best["EF"]
        # exact-Fisher steps with a unit step are Newton's method: at the optimum in 100
        assert best["NG"] <= tie
        assert best["GD"] > tie
        assert (rows.loc[rows["method"] == "GD", "damping"]).isna().all()
    assert finding.held == order


def test_the_fewest_iterations_to_the_target_over_the_grid(result):
    table = result.table
    finding = _finding(result, "the fewest iterations")
    fewest = {}
    for dataset in DATASETS:
        for method in ("GD", "EF", "NG"):
            runs = table[(table["dataset"] == dataset) & (table["method"] == method)]
            fewest[dataset, method] = runs["iterations_to_target"].min()
            assert finding.numbers[f"{dataset}_{method}"] == fewest[dataset, method]
            reached = runs["iterations_to_target"][np.isfinite(runs["iterations_to_target"])]
            assert ((reached >= 1) & (reached <= result.settings["n_iter"])).all()
        # Newton's local quadratic convergence: a handful of steps
        assert fewest[dataset, "NG"] <= 20
    assert finding.held == all(
        fewest[d, "NG"] < fewest[d, "EF"] < fewest[d, "GD"] for d in DATASETS
    )


def test_ef_and_ng_directions_disagree_along_the_ef_run(result):
    table = result.table
    finding = _finding(result, "EF steps are misaligned")
    for dataset in DATASETS:
        ef = table[(table["dataset"] == dataset) & (table["method"] == "EF")]
        cols = ["cos_ef_ng_median", "cos_ef_ng_min", "cos_ef_ng_points"]
        assert ef.loc[~ef["selected"], cols].isna().all().all()
        (row,) = ef[ef["selected"]].to_dict("records")
        assert finding.numbers[f"{dataset}_median"] == row["cos_ef_ng_median"]
        assert finding.numbers[f"{dataset}_min"] == row["cos_ef_ng_min"]
        assert -1 <= row["cos_ef_ng_min"] <= row["cos_ef_ng_median"] <= 1
        assert 0 < row["cos_ef_ng_points"] <= result.settings["n_iter"] + 1
        assert f"min {row['cos_ef_ng_min']:.3f}" in finding.statement
    assert finding.held  # robust: the smallest cosines are 0.5–0.65 at quick size
    assert finding.held == all(finding.numbers[f"{d}_min"] < 0.9 for d in DATASETS)


def test_ng_field_points_at_the_optimum_and_ef_field_does_not(result):
    table = result.table
    finding = _finding(result, "linear regression")
    fields = table[table["dataset"].isin(CASES)].set_index(["dataset", "method"])
    assert len(fields) == 6 and fields["final_suboptimality"].isna().all()
    for case in CASES:
        ng, ef, gd = (fields.loc[(case, m)] for m in ("NG", "EF", "GD"))
        # Gaussian model: F is constant and L quadratic, so −F⁻¹∇L = θ* − θ exactly
        assert ng["cos_to_optimum_min"] == pytest.approx(1.0, abs=1e-9)
        assert finding.numbers[f"{case}_NG_min"] == ng["cos_to_optimum_min"]
        assert finding.numbers[f"{case}_EF_min"] == ef["cos_to_optimum_min"]
        assert finding.numbers[f"{case}_EF_median"] == ef["cos_to_optimum_median"]
        assert ef["cos_to_optimum_min"] < ef["cos_to_optimum_median"] < 1
        # gradient descent on the anisotropic quadratic is not aimed at θ* either
        assert gd["cos_to_optimum_min"] < 1 - 1e-3
    assert finding.held  # robust: EF's smallest cosine is about -0.3 in the misspecified case
    assert finding.held == (
        all(finding.numbers[f"{c}_NG_min"] >= 1 - 1e-9 for c in CASES)
        and finding.numbers["linreg-misspecified_EF_min"] < 0.9
    )


def test_the_same_seed_gives_the_same_table(result):
    again = get_study("empirical-fisher").run(True, 0)
    plt.close(again.figure)
    assert again.table.equals(result.table)


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_reference_optimum_is_scikit_learns(result, dataset):
    """L* against LogisticRegression(C = 1/alpha): an independent solver of the same
    objective, mean nll + alpha ‖W‖² / (2N) (the README's convention)."""
    from scipy.special import logsumexp
    from sklearn.linear_model import LogisticRegression

    data = PROBLEMS[f"{dataset}-logistic"].load(0)
    X, y, n = data.X_train, data.y_train, len(data.y_train)
    clf = LogisticRegression(C=1 / data.alpha, tol=1e-12, max_iter=10_000).fit(X, y)
    if clf.coef_.shape[0] == 1:  # binary: one logit
        z = X @ clf.coef_[0] + clf.intercept_[0]
        nll = np.logaddexp(0, z) - (y == clf.classes_[1]) * z
    else:
        Z = X @ clf.coef_.T + clf.intercept_
        nll = logsumexp(Z, axis=1) - Z[np.arange(n), np.searchsorted(clf.classes_, y)]
    loss = nll.mean() + data.alpha * (clf.coef_**2).sum() / (2 * n)
    assert result.settings["f_star"][dataset] == pytest.approx(loss, abs=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_the_field_cosines_match_explicit_formulas(result, case):
    """The vector-field rows against closed forms for y ≈ w·x + b with a unit-variance
    Gaussian: ∇L = mean rₙ x̄ₙ, F = mean x̄ₙx̄ₙᵀ, EF = mean rₙ² x̄ₙx̄ₙᵀ, rₙ = θᵀx̄ₙ − yₙ."""
    X, y = linreg_data(case, result.settings["linreg_n_samples"], result.settings["seed"])
    Xb = np.column_stack([X[:, 0], np.ones(len(X))])
    theta_star = np.linalg.solve(Xb.T @ Xb, Xb.T @ y[:, 0])
    offsets = np.linspace(-3.0, 3.0, result.settings["linreg_grid"])
    W, B = np.meshgrid(theta_star[0] + offsets, theta_star[1] + offsets)
    points = np.column_stack([W.ravel(), B.ravel()])
    r = points @ Xb.T - y[:, 0]  # (n_points, n_samples)
    grad = r @ Xb / len(Xb)
    F = Xb.T @ Xb / len(Xb)
    EF = np.einsum("pn,ni,nj->pij", r**2, Xb, Xb) / len(Xb)
    directions = {
        "GD": -grad,
        "NG": -np.linalg.solve(F, grad.T).T,
        "EF": -np.linalg.solve(EF, grad[:, :, None])[:, :, 0],
    }
    to_opt = theta_star - points
    rows = result.table[result.table["dataset"] == case].set_index("method")
    for method, d in directions.items():
        cos = (d * to_opt).sum(1) / np.linalg.norm(d, axis=1) / np.linalg.norm(to_opt, axis=1)
        assert rows.loc[method, "cos_to_optimum_min"] == pytest.approx(cos.min(), abs=1e-10)
        assert rows.loc[method, "cos_to_optimum_median"] == pytest.approx(np.median(cos), abs=1e-10)
