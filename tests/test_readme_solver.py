"""The README's "Writing a solver" example runs as written, and computes RMSprop."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from natgrad_core import LogisticModel, Objective
from natgrad_core.benchmarking.store import ResultsStore

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(# rmsprop\.py:.*?)```", text, flags=re.S)
    return code


def test_the_readme_solver_runs_and_matches_a_numpy_rmsprop(tmp_path, capsys):
    path = tmp_path / "rmsprop.py"
    path.write_text(_example())
    namespace = runpy.run_path(str(path), run_name="__main__")
    res = namespace["res"]
    status, n_iter, loss, n_grad = capsys.readouterr().out.split()
    assert (status, int(n_iter), int(n_grad)) == (res.status, res.n_iter, res.counts["n_grad"])
    assert float(loss) == round(res.loss, 6)
    # one gradient per step, all counted
    assert res.counts["n_grad"] == res.n_iter
    # independently: the same updates in plain numpy on the objective's own gradient
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = LogisticModel(4, 3)
    objective = Objective(model, X, y, 1.0)
    theta = model.init_params(None)
    square = np.zeros_like(theta)
    for _ in range(res.n_iter):
        _, grad = objective.loss_and_grad(theta, count=False)
        square = 0.9 * square + 0.1 * grad**2
        theta = theta - 0.05 * grad / (np.sqrt(square) + 1e-8)
    np.testing.assert_allclose(res.theta, theta, rtol=1e-12, atol=1e-14)
    assert res.loss < objective.loss(model.init_params(None), count=False)


def test_the_readme_solver_runs_in_a_grid_as_the_readme_says(tmp_path):
    """rmsprop.py and the README's [[solver]] entry, as written, in `natgrad run`."""
    (tmp_path / "rmsprop.py").write_text(_example())
    text = README.read_text(encoding="utf-8")
    (entry,) = re.findall(r"```toml\n(\[\[solver\]\]\nlabel = \"rmsprop\".*?)```", text, flags=re.S)
    run = '[run]\nproblems = ["iris-logistic", "wine-mlp"]\nseeds = [0]\nmax_iter = 20\n'
    (tmp_path / "my.toml").write_text(run + entry)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([".", os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-m", "natgrad_core.benchmarking.cli", "run", "my.toml", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    frame = ResultsStore(tmp_path / "results").load()
    assert set(frame["solver"]) == {"rmsprop"}
    assert set(frame["algorithm"]) == {"rmsprop:RMSprop"}
    last = frame.sort_values("iteration").groupby("problem").tail(1)
    assert set(last["status"]) == {"max_iter"}
    assert (last["n_grad"] == 20).all()
    record = next(iter(ResultsStore(tmp_path / "results").records().values()))
    assert record["configuration"]["solver"]["params"]["learning_rate"] == 0.05
