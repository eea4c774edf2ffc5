"""Fit every solver on bundled scikit-learn datasets and print a comparison table.

    python examples/compare_solvers.py [--out results]

Problems: L2 logistic regression on breast_cancer (binary, alpha = 1) and digits
(10 classes, alpha = 1), and a 13-16-3 tanh MLP on wine (alpha = 1e-3); features
standardized. Each solver runs from the same start with the hyperparameters below and
stops at ‖∇L‖_∞ ≤ 1e-6 or its iteration budget. The table reports the final loss, its gap
to the best loss any solver reached on that problem, iterations, optimizer time (the
evaluation for the record is outside the clock) and oracle counts. It is written to
``<out>/quick_comparison.csv`` with a provenance file beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
import sklearn
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info

import natgrad_core
from natgrad_core import MLP, LogisticModel, make_optimizer, minimize

SOLVER_SETTINGS = {
    "exact": {"damping": 1e-4, "step": "lm"},
    "diag": {"damping": 1e-4, "step": "armijo"},
    "kfac": {"damping": 1e-4, "step": "quadratic"},
    "ekfac": {"damping": 1e-4, "step": "quadratic"},
    "cg": {"damping": 1e-4, "step": "lm", "cg_maxiter": 50},
    "gd": {"learning_rate": 1.0, "step": "armijo"},
    "momentum": {"learning_rate": 0.1, "momentum": 0.9},
    "adam": {"learning_rate": 0.01},
    "lbfgs": {},
}


def problems():
    Xb, yb = load_breast_cancer(return_X_y=True)
    Xd, yd = load_digits(return_X_y=True)
    Xb = StandardScaler().fit_transform(Xb)
    Xw, yw = load_wine(return_X_y=True)
    Xd = StandardScaler().fit_transform(Xd)
    Xw = StandardScaler().fit_transform(Xw)
    return [
        ("breast_cancer-logistic", LogisticModel(Xb.shape[1], 2), Xb, yb, 1.0, 100),
        ("digits-logistic", LogisticModel(Xd.shape[1], 10), Xd, yd, 1.0, 100),
        ("wine-mlp-16", MLP(Xw.shape[1], 3, (16,), "tanh", "softmax"), Xw, yw, 1e-3, 100),
    ]


def provenance() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "natgrad": natgrad_core.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "blas": [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads")}
            for info in threadpool_info()
        ],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    args = parser.parse_args(argv)
    rows = []
    for name, model, X, y, alpha, budget in problems():
        theta0 = model.init_params(0)
        for solver, settings in SOLVER_SETTINGS.items():
            opt = make_optimizer(solver, **settings)
            res = minimize(
                model,
                X,
                y,
                opt,
                alpha=alpha,
                theta0=theta0,
                max_iter=budget,
                tol=1e-6,
                random_state=0,
            )
            rows.append(
                {
                    "problem": name,
                    "solver": solver,
                    "status": res.status,
                    "loss": res.loss,
                    "grad_norm": res.grad_norm,
                    "n_iter": res.n_iter,
                    "time_s": res.time,
                    **res.counts,
                }
            )
    table = pd.DataFrame(rows)
    table.insert(4, "gap", table["loss"] - table.groupby("problem")["loss"].transform("min"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "quick_comparison.csv", index=False)
    (out / "quick_comparison.provenance.json").write_text(json.dumps(provenance(), indent=2))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nwrote {out / 'quick_comparison.csv'}")


if __name__ == "__main__":
    main()
