"""Solver plugins end to end: the example package (tests/plugin_example, installed by CI
and by the README's test command) through its entry points and import paths, the
failures that must stop a grid before it starts (exit 2) and the ones that must not stop
it (status "error"), the plugin identity in run keys, a third-party BudgetedSolver, and
scikit-learn's shipped solvers reaching the exact optimum."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import fractional_matrix_power
from scipy.special import logsumexp

from natgrad_core import LogisticModel, Objective, plugins
from natgrad_core.benchmarking.grid import config_from_dict, run_grid
from natgrad_core.benchmarking.problems import get_problem
from natgrad_core.benchmarking.runner import RunSpec, SolverConfig
from natgrad_core.benchmarking.store import ResultsStore
from natgrad_core.optim import make_optimizer, minimize
from natgrad_core.optim.registry import resolved_params

EXAMPLE = "natgrad-example-plugin"
INSTALL_HINT = "pip install -e tests/plugin_example (the README's test command does)"


@pytest.fixture(scope="module")
def example():
    try:
        version = importlib.metadata.version(EXAMPLE)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"the example plugin package is not installed: {INSTALL_HINT}")
    plugins.clear_cache()
    return version


@pytest.fixture
def module(tmp_path, monkeypatch):
    """write(name, source) -> a module importable as ``name`` from tmp_path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(name, None)
        plugins.clear_cache()
        return name

    yield write
    plugins.clear_cache()


def _env(tmp_path) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path), str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    return env


def _natgrad(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "natgrad_core.benchmarking.cli", *args],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=600,
    )


def _toml(tmp_path, text, name="grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _one_solver(tmp_path, solver: str) -> Path:
    """A grid of one solver on iris-logistic, one seed."""
    run = '[run]\nproblems = ["iris-logistic"]\nseeds = [0]\n'
    return _toml(tmp_path, f'{run}[[solver]]\nsolver = "{solver}"\n')


# ============================================================ the example package
def test_natgrad_list_shows_the_installed_plugins_with_package_and_version(example, tmp_path):
    out = _natgrad(tmp_path, "list", "plugins")
    assert out.returncode == 0, out.stderr
    for name, target in (
        ("example-rmsprop", "natgrad_example_plugin.rmsprop:RMSprop"),
        ("example-shampoo", "natgrad_example_plugin.shampoo:Shampoo"),
        ("example-blobs", "natgrad_example_plugin.data:blobs"),
    ):
        line = next(line for line in out.stdout.splitlines() if line.split()[:1] == [name])
        assert target in line and f"{EXAMPLE} {example}" in line


def _softmax_loss_grad(W, X, Y, alpha):
    """Multinomial logistic loss mean nll + alpha ||W[:-1]||^2 / (2N) and its gradient,
    written out by hand (W has the intercept as its last row)."""
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    Z = A @ W
    loss = np.mean(logsumexp(Z, axis=1) - np.sum(Z * Y, axis=1))
    P = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
    mask = np.ones_like(W)
    mask[-1] = 0
    n = X.shape[0]
    loss += alpha * np.sum((W * mask) ** 2) / (2 * n)
    return loss, A.T @ (P - Y) / n + alpha * W * mask / n


def test_toml_grid_through_entry_points_and_import_paths(example, tmp_path):
    """One grid, each plugin named both ways; the example Shampoo raises on iris-mlp
    (fail_above): those runs are stored as errors with the plugin's traceback and the
    grid goes on."""
    config = _toml(
        tmp_path,
        """\
        [run]
        problems = ["iris-logistic", "iris-mlp", "blobs"]
        seeds = [0, 1]
        max_iter = 15
        fidelity = false

        [[problem]]
        name = "blobs"
        dataset = "example-blobs"
        model = "logistic"

        [[solver]]
        solver = "example-rmsprop"
        params = { learning_rate = 0.05 }

        [[solver]]
        label = "rmsprop-by-path"
        solver = "natgrad_example_plugin.rmsprop:RMSprop"
        params = { learning_rate = 0.05 }

        [[solver]]
        solver = "example-shampoo"
        params = { fail_above = 40 }
        """,
    )
    out = _natgrad(tmp_path, "run", str(config), "--out", str(tmp_path / "res"), "--quiet")
    assert out.returncode == 1, out.stderr  # errors stored: the grid failed, but finished
    store = ResultsStore(tmp_path / "res")
    frame = store.load()
    last = frame.sort_values("iteration").groupby("run_key").tail(1)
    assert len(last) == 3 * 3 * 2  # every run stored
    errors = last[last["status"] == "error"]
    assert set(zip(errors["problem"], errors["solver"])) == {("iris-mlp", "example-shampoo")}
    for message in errors["message"]:
        assert "RuntimeError: example failure: 67 parameters > 40" in message
        assert "natgrad_example_plugin/shampoo.py" in message  # the plugin's own frame
    assert set(last.loc[last["status"] != "error", "status"]) == {"max_iter"}

    records = store.records()
    for key, algorithm in zip(last["run_key"], last["algorithm"]):
        identity = records[key]["configuration"]["solver"]["plugin"]
        assert identity["package"] == EXAMPLE and identity["version"] == example
        assert len(identity["source_sha256"]) == 64
        assert identity["import"] in (
            "natgrad_example_plugin.rmsprop:RMSprop",
            "natgrad_example_plugin.shampoo:Shampoo",
        )
        assert identity["origin"] == ("import path" if ":" in algorithm else "entry point")
    # resolved by the factory's signature: the given keyword and the defaults
    key = last.loc[last["solver"] == "example-rmsprop", "run_key"].iloc[0]
    assert records[key]["configuration"]["solver"]["params"] == {
        "learning_rate": 0.05,
        "rho": 0.9,
        "eps": 1e-8,
    }

    # the same factory named two ways computes the same numbers
    by_name = frame[frame["solver"] == "example-rmsprop"].sort_values(
        ["problem", "seed", "iteration"]
    )
    by_path = frame[frame["solver"] == "rmsprop-by-path"].sort_values(
        ["problem", "seed", "iteration"]
    )
    np.testing.assert_array_equal(by_name["loss"].to_numpy(), by_path["loss"].to_numpy())
    assert (by_name["n_grad"].to_numpy() == by_name["iteration"].to_numpy()).all()

    # RMSprop written out independently, on the run's own data, gives the stored losses
    data = get_problem("iris-logistic").load(0)
    Y = np.eye(3)[data.y_train]
    W = np.zeros((5, 3))
    square = np.zeros_like(W)
    expected = []
    for _ in range(15):
        _, grad = _softmax_loss_grad(W, data.X_train, Y, data.alpha)
        square = 0.9 * square + 0.1 * grad**2
        W = W - 0.05 * grad / (np.sqrt(square) + 1e-8)
        expected.append(_softmax_loss_grad(W, data.X_train, Y, data.alpha)[0])
    run = by_name[(by_name["problem"] == "iris-logistic") & (by_name["seed"] == 0)]
    np.testing.assert_allclose(run["loss"].to_numpy()[1:], expected, rtol=1e-12)


def test_example_shampoo_step_is_the_formula(example):
    """One step: W - lr (L + eps I)^(-1/4) G (R + eps I)^(-1/4) per layer, with G from
    central finite differences and the roots from scipy's fractional_matrix_power."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3)), rng.integers(0, 3, 30)
    model = LogisticModel(3, 3)
    objective = Objective(model, X, y, alpha=0.5)
    theta = rng.standard_normal(model.n_params) * 0.3
    h = 1e-6
    grad = np.array(
        [
            (
                objective.loss(theta + h * e, count=False)
                - objective.loss(theta - h * e, count=False)
            )
            / (2 * h)
            for e in np.eye(model.n_params)
        ]
    )
    G = grad.reshape(4, 3)
    eps, lr = 1e-4, 0.1
    left = fractional_matrix_power(G @ G.T + eps * np.eye(4), -0.25)
    right = fractional_matrix_power(G.T @ G + eps * np.eye(3), -0.25)
    expected = theta - lr * (left @ G @ right).ravel()
    shampoo = make_optimizer("example-shampoo", learning_rate=lr, eps=eps)
    new, _, _ = shampoo.step(objective, theta, shampoo.init(objective, theta))
    np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-8)


# ================================================================ identity and keys
_RMS = """\
    import numpy as np
    from natgrad_core.optim import Optimizer, StepInfo

    class Plain(Optimizer):
        def __init__(self, learning_rate=0.1):
            self.learning_rate = learning_rate

        def init(self, objective, theta):
            return ()

        def step(self, objective, theta, state):
            loss, grad = objective.loss_and_grad(theta)
            return theta - {factor} * self.learning_rate * grad, state, StepInfo(
                loss, self.learning_rate, 0.0, "ok", {{}})
    """


def test_editing_a_plugin_changes_its_run_keys(module):
    builtin = RunSpec(get_problem("iris-logistic"), SolverConfig.make("gd", "gd"), 0)
    builtin_key = builtin.key()
    name = module("my_solver", _RMS.format(factor=1.0))
    spec = RunSpec(get_problem("iris-logistic"), SolverConfig.make("s", f"{name}:Plain"), 0)
    before = (spec.key(), spec.record()["configuration"]["solver"]["plugin"])
    assert before[1]["import"] == "my_solver:Plain" and before[1]["package"] is None
    module("my_solver", _RMS.format(factor=1.0))  # same source: same key
    assert spec.key() == before[0]
    module("my_solver", _RMS.format(factor=0.5))
    after = spec.record()["configuration"]["solver"]["plugin"]
    assert after["source_sha256"] != before[1]["source_sha256"]
    assert spec.key() != before[0]
    # a natgrad algorithm has no plugin identity, and its key is unchanged by any of this
    assert "plugin" not in builtin.resolved_config()["solver"]
    assert builtin.key() == builtin_key


# ======================================================= failures before any run: exit 2
FAILING = {
    # name: (module source, solver entry, fragments of the error)
    "import error": ("raise ImportError('needs libfoo')", "{m}:F", ["ImportError: needs libfoo"]),
    "missing attribute": ("X = 1", "{m}:Missing", ["cannot be found", "Missing"]),
    "constructor raises": (
        "def F(**kw):\n    raise RuntimeError('no GPU here')",
        "{m}:F",
        ["cannot be constructed", "RuntimeError: no GPU here"],
    ),
    "bad hyperparameter": (
        "def F(**kw):\n    raise ValueError(f'lr must be > 0, got {kw}')",
        "{m}:F",
        ["lr must be > 0"],
    ),
    "unknown keyword": (
        "class F:\n    def __init__(self, lr=1.0):\n        pass",
        "{m}:F",
        ["unexpected keyword argument 'momentum'"],
    ),
    "not an optimizer": ("def F(**kw):\n    return 42", "{m}:F", ["returned int", "init"]),
    "unknown name": ("", "no-such-solver", ["Unknown solver 'no-such-solver'", "entry point"]),
    "exits at import": ("import sys\nsys.exit(3)", "{m}:F", ["SystemExit: 3"]),
    "syntax error": ("def F(:\n    pass", "{m}:F", ["cannot be imported", "SyntaxError"]),
    "exits in constructor": (
        "import sys\ndef F(**kw):\n    sys.exit('bye')",
        "{m}:F",
        ["cannot be constructed", "SystemExit: bye"],
    ),
    "params without a JSON form": (
        "class F:\n    def __init__(self):\n        pass\n    def init(self, o, t):\n"
        "        pass\n    def step(self, o, t, s):\n        pass\n"
        "    def get_params(self):\n        return {'callback': print}",
        "{m}:F",
        ["callback", "no JSON form"],
    ),
    "module missing": ("", "no_such_module_xyz:F", ["ModuleNotFoundError", "no_such_module_xyz"]),
}


@pytest.mark.parametrize("case", sorted(FAILING))
def test_a_plugin_that_cannot_be_made_fails_the_configuration(case, module):
    source, solver, fragments = FAILING[case]
    name = module(f"failing_{case.replace(' ', '_')}", source)
    entry = {"solver": solver.format(m=name), "label": "p"}
    if case == "unknown keyword":
        entry["params"] = {"momentum": 0.9}
    raw = {"run": {"problems": ["iris-logistic"], "seeds": [0], "max_iter": 2}, "solver": [entry]}
    with pytest.raises(ValueError) as info:
        config_from_dict(raw, "failing")
    message = str(info.value)
    assert "solver 'p'" in message
    for fragment in fragments:
        assert fragment in message


def test_a_dry_run_names_each_plugin_with_its_package_version_and_source(example, tmp_path):
    config = _one_solver(tmp_path, "example-shampoo")
    out = _natgrad(tmp_path, "run", str(config), "--out", str(tmp_path / "res"), "--dry-run")
    assert out.returncode == 0, out.stderr
    identity = SolverConfig.make("s", "example-shampoo").identity()
    expected = (
        f"  plugin: natgrad_example_plugin.shampoo:Shampoo ({EXAMPLE} {example}, source "
        f"{identity['source_sha256'][:12]})"
    )
    assert expected in out.stdout.splitlines()


def test_natgrad_run_exits_2_before_any_run_naming_the_plugin(tmp_path):
    (tmp_path / "broken_solver.py").write_text(
        "import numpy\nraise RuntimeError('boom at import')\n"
    )
    config = _one_solver(tmp_path, "broken_solver:Factory")
    out = _natgrad(tmp_path, "run", str(config), "--out", str(tmp_path / "res"))
    assert out.returncode == 2
    assert "broken_solver:Factory" in out.stderr and "RuntimeError: boom at import" in out.stderr
    assert not (tmp_path / "res").exists()


def test_a_broken_entry_point_exits_2_naming_it(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken_pkg.py").write_text("raise ImportError('compiled for another Python')\n")
    info = site / "broken_pkg-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pkg\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[natgrad.solvers]\nbroken = broken_pkg:Solver\n")
    config = _one_solver(tmp_path, "broken")
    env = _env(site)
    listing = subprocess.run(
        [sys.executable, "-m", "natgrad_core.benchmarking.cli", "list", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert listing.returncode == 0  # listing imports nothing
    assert "broken_pkg:Solver  [plugin from broken-pkg 2.0]" in listing.stdout
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "natgrad_core.benchmarking.cli",
            "run",
            str(config),
            "--out",
            str(tmp_path / "res"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 2
    assert "'broken'" in out.stderr and "ImportError: compiled for another Python" in out.stderr
    assert not (tmp_path / "res").exists()


# ============================================================ a third-party BudgetedSolver
_BUDGETED = """\
    import numpy as np
    from scipy.optimize import minimize as scipy_minimize
    from natgrad_core.optim import BudgetedSolver

    class ScipyCG(BudgetedSolver):
        name = "scipy-cg"

        def __init__(self, gtol=1e-12):
            self.gtol = gtol

        def get_params(self):
            return {"gtol": self.gtol, "budget_growth": self.budget_growth}

        def solve(self, objective, theta, budget):
            fun = lambda t: objective.loss_and_grad(t, count=False)
            res = scipy_minimize(fun, theta, jac=True, method="CG",
                                 options={"maxiter": budget, "gtol": self.gtol})
            return res.x, int(res.nit), str(res.message)
    """


def test_a_budgeted_plugin_runs_as_restarted_fits(module, tmp_path):
    name = module("my_budgeted", _BUDGETED)
    raw = {
        "run": {"problems": ["wine-logistic"], "seeds": [0], "max_iter": 30, "fidelity": False},
        "solver": [{"solver": f"{name}:ScipyCG", "label": "cg-scipy"}],
    }
    store = ResultsStore(tmp_path / "res")
    run_grid(config_from_dict(raw, "budgeted"), store, progress=False)
    run = store.load().sort_values("iteration")
    assert set(run["curve"]) == {"restarts"}
    # one row per budget 1, 2, 3, 5, 8, 12, 18, 27 (and 30) until the target stops it
    assert run["iteration"].tolist()[:6] == [0, 1, 2, 3, 5, 8]
    assert run.loc[run["iteration"] > 0, ["n_grad", "n_loss", "n_fvp"]].isna().all().all()
    assert (run.loc[run["iteration"] > 0, "time"] > 0).all()
    assert run["status"].iloc[-1] in ("target", "max_iter", "stalled")
    record = next(iter(store.records().values()))
    assert record["configuration"]["solver"]["params"] == {"budget_growth": 1.5, "gtol": 1e-12}


# ======================================================= scikit-learn at the exact optimum
@pytest.mark.parametrize("problem", ["iris-logistic", "wine-logistic"])
def test_sklearn_solvers_reach_the_exact_optimum(problem, tmp_path):
    solvers = [
        {"solver": "sklearn-newton-cholesky"},
        {"solver": "sklearn-newton-cg"},
        {"solver": "sklearn-lbfgs"},
        {"solver": "sklearn-saga", "params": {"random_state": 0}},
    ]
    raw = {
        "run": {
            "problems": [problem],
            "seeds": [0],
            "max_iter": 3000,
            "time_limit": 120.0,
            "target_suboptimality": 1e-11,
            "fidelity": False,
        },
        "solver": solvers,
    }
    store = ResultsStore(tmp_path / "res")
    run_grid(config_from_dict(raw, "sk"), store, progress=False)
    last = store.load().sort_values("iteration").groupby("solver").tail(1).set_index("solver")
    # suboptimality against natgrad's exact reference (Newton to machine precision)
    assert (last["status"] == "target").all(), last[["status", "suboptimality", "message"]]
    assert (last["suboptimality"] <= 1e-11).all()
    assert (last["dist_to_opt"] <= 1e-4).all()


def test_resolved_params_of_shipped_solvers_name_scikit_learn_and_its_version():
    params = resolved_params("sklearn-lbfgs")
    assert params["solver"] == "lbfgs" and params["tol"] == 1e-10
    identity = SolverConfig.make("s", "sklearn-lbfgs").identity()
    assert identity["origin"] == "natgrad"
    assert identity["requires"] == {"scikit-learn": importlib.metadata.version("scikit-learn")}
    json.dumps(params)


def test_minimize_refuses_a_grid_batch_size_for_a_budgeted_solver():
    X = np.random.default_rng(0).standard_normal((20, 3))
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="draws its own mini-batches"):
        minimize(LogisticModel(3, 2), X, y, make_optimizer("sklearn-lbfgs"), batch_size=5)


def test_mini_batches_are_refused_up_front_to_a_budgeted_solver_and_given_to_a_plugin(module):
    """A BudgetedSolver draws its own batches: a grid batch size is refused when the
    configuration is read, not in every run. A duck-typed plugin (no full_batch_only
    attribute) takes the grid's mini-batches."""
    raw = {
        "run": {"problems": ["iris-mlp"], "seeds": [0], "max_iter": 2, "batch_size": 32},
        "solver": [{"solver": "sklearn-mlp-adam"}],
    }
    with pytest.raises(
        ValueError, match=r"draws its own mini-batches .*, but its batch_size is 32"
    ):
        config_from_dict(raw, "batched")
    name = module("duck_solver", _RMS.format(factor=1.0).replace("(Optimizer)", ""))
    raw["solver"] = [{"solver": f"{name}:Plain", "label": "duck"}]
    config = config_from_dict(raw, "batched")
    (spec,) = config.specs()
    assert spec.batch_size == 32
