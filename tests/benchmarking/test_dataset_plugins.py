"""Dataset plugins: a problem's data from a loader named by import path or entry point.

Every loader lives in a module written into ``tmp_path`` under a name of its own (the
process-wide import and data caches then never mix two tests' loaders). The reference
for the arrays is an independent split and standardization in float64.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from natgrad_core import plugins
from natgrad_core.benchmarking.grid import config_from_dict, run_grid
from natgrad_core.benchmarking.problems import (
    DATASETS,
    Problem,
    dataset_plugins,
    problem_from_dict,
)
from natgrad_core.benchmarking.store import ResultsStore

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ARRAY_RTOL, ARRAY_ATOL = 1e-12, 1e-12
"""Standardization in two float64 orders of summation agrees to rounding."""

LOADERS = """\
import os

import numpy as np

CALLS = []
METADATA = {"description": "two Gaussian blobs", "source": "tests", "license": "CC0-1.0"}


def data():
    rng = np.random.default_rng(SEED)
    y = np.arange(60) % 2
    X = rng.normal(size=(60, 3)) + y[:, None]
    return X, y


def load():
    CALLS.append(1)
    X, y = data()
    return X, y, METADATA


def load_xy():
    return data()


def boom():
    raise RuntimeError("the archive is gone")


def one():
    return (data()[0],)


def not_array():
    return "features", data()[1]


def with_nan():
    X, y = data()
    X[3, 1] = np.nan
    return X, y


def mismatched():
    X, y = data()
    return X, y[:-1]


def three_d():
    X, y = data()
    return X.reshape(60, 3, 1), y


def no_features():
    X, y = data()
    return X[:, :0], y


def bad_metadata():
    X, y = data()
    return X, y, {"created": object()}


def flaky():
    CALLS.append(1)
    if len(CALLS) == 1:
        raise OSError("first call fails")
    return data()


def parent_only():
    if os.getpid() != int(os.environ.get("NATGRAD_TEST_PARENT", "-1")):
        raise OSError("a worker cannot reach the data")
    return data()


NOT_CALLABLE = 3
"""

_names = itertools.count()


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Write LOADERS (with a data seed) as a new module on sys.path; return its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(seed: int = 0, folder=tmp_path, name: str | None = None) -> str:
        name = name or f"natgrad_test_loaders_{next(_names)}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(LOADERS.replace("SEED", str(seed)))
        written.append(name)
        plugins.clear_cache()
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)
    plugins.clear_cache()


def _reference(problem: Problem, X, y, run_seed: int):
    """Stratified split seeded as Problem.load documents, standardized by the training
    split's mean and (population) standard deviation."""
    split_seed = int(np.random.SeedSequence([problem.seed, run_seed]).generate_state(1)[0])
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=problem.test_size, random_state=split_seed, stratify=y
    )
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    return (X_tr - mean) / std, (X_te - mean) / std, y_tr, y_te


def _arrays_sha256(X, y) -> str:
    h = hashlib.sha256()
    for arr in (np.asarray(X, dtype=np.float64), np.asarray(y)):
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


# ================================================================= import path
def test_import_path_loader_loads_splits_and_standardizes(write_module):
    name = write_module()
    module = __import__(name)
    X, y = module.data()
    problem = Problem("blobs", f"{name}:load", alpha=1.0)
    assert problem.is_plugin
    for run_seed in (0, 3):
        data = problem.load(run_seed)
        X_tr, X_te, y_tr, y_te = _reference(problem, X, y, run_seed)
        np.testing.assert_allclose(data.X_train, X_tr, rtol=ARRAY_RTOL, atol=ARRAY_ATOL)
        np.testing.assert_allclose(data.X_test, X_te, rtol=ARRAY_RTOL, atol=ARRAY_ATOL)
        np.testing.assert_array_equal(data.y_train, y_tr)
        np.testing.assert_array_equal(data.y_test, y_te)
        assert (data.model.n_features, data.model.n_outputs) == (3, 1)
    problem.validate((0, 1, 2))
    problem.to_dict()
    assert len(module.CALLS) == 1, "the loader is called once per process"


def test_two_tuple_loader_and_file_data_give_the_same_problem(write_module, tmp_path):
    name = write_module()
    X, y = __import__(name).data()
    path = tmp_path / "blobs.npz"
    np.savez(path, X=X, y=y)
    from_plugin = Problem("blobs", f"{name}:load_xy", "mlp", hidden=(4,)).load(5)
    from_file = Problem("blobs", "file", "mlp", hidden=(4,), path=str(path), format="npz")
    from_file = from_file.load(5)
    for key in ("X_train", "X_test", "y_train", "y_test"):
        np.testing.assert_array_equal(getattr(from_plugin, key), getattr(from_file, key))


def test_to_dict_carries_identity_data_hash_and_metadata(write_module):
    name = write_module()
    module = __import__(name)
    d = Problem("blobs", f"{name}:load").to_dict()
    assert d["plugin"]["import"] == f"{name}:load"
    assert d["plugin"]["origin"] == "import path"
    assert len(d["plugin"]["source_sha256"]) == 64
    assert d["data_sha256"] == _arrays_sha256(*module.data())
    assert d["metadata"] == module.METADATA
    json.dumps(d, allow_nan=False)


def test_to_dict_follows_the_loader_source(write_module, tmp_path):
    first = write_module(seed=0)
    before = Problem("blobs", f"{first}:load").to_dict()
    # the same code under another module name: another import path
    renamed = write_module(seed=0)
    after_rename = Problem("blobs", f"{renamed}:load").to_dict()
    assert after_rename["plugin"]["import"] != before["plugin"]["import"]
    assert after_rename["data_sha256"] == before["data_sha256"]
    # the same module name, another file with other data: reloaded, new hashes
    sys.modules.pop(first)
    write_module(seed=1, folder=tmp_path / "v2", name=first)
    sys.path.insert(0, str(tmp_path / "v2"))
    try:
        changed = Problem("blobs", f"{first}:load").to_dict()
    finally:
        sys.path.remove(str(tmp_path / "v2"))
    assert changed["plugin"]["import"] == before["plugin"]["import"]
    assert changed["plugin"]["source_sha256"] != before["plugin"]["source_sha256"]
    assert changed["data_sha256"] != before["data_sha256"]


# ====================================================================== errors
@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("natgrad_no_such_module:load", ["cannot be imported", "Expected an importable"]),
        ("{mod}:no_such_loader", ["cannot be found", "Expected an importable"]),
        ("{mod}:NOT_CALLABLE", ["expected a callable", "not callable"]),
        ("natgrad-no-such-dataset", ["Unknown dataset", "import path", "natgrad.problems"]),
    ],
)
def test_unknown_or_unimportable_plugin_fails_at_construction(write_module, target, fragments):
    target = target.format(mod=write_module())
    with pytest.raises(ValueError) as info:
        problem_from_dict({"name": "mine", "dataset": target})
    message = str(info.value)
    for fragment in ["'mine'", repr(target), *fragments]:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("loader", "fragments"),
    [
        ("boom", ["raised RuntimeError", "the archive is gone"]),
        ("one", ["got a tuple of length 1"]),
        ("not_array", ["X (features) must hold real numbers"]),
        ("with_nan", ["X (features) contains 1 NaN"]),
        ("mismatched", ["X has 60 rows but y has 59 labels"]),
        ("three_d", ["X (features) must be 2-dimensional", "(60, 3, 1)"]),
        ("no_features", ["expected at least one feature, got 0"]),
        ("bad_metadata", ["metadata must hold JSON values"]),
    ],
)
def test_bad_loader_fails_validation_naming_problem_and_plugin(write_module, loader, fragments):
    target = f"{write_module()}:{loader}"
    problem = Problem("mine", target)  # imported, not called
    for call in (problem.validate, problem.to_dict, problem.load):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        for fragment in ["'mine'", repr(target), "expected a callable", *fragments]:
            assert fragment.lower() in message.lower(), (fragment, message)


def test_a_failed_load_is_not_cached(write_module):
    name = write_module()
    problem = Problem("mine", f"{name}:flaky")
    with pytest.raises(ValueError, match="first call fails"):
        problem.validate()
    problem.validate()
    assert len(__import__(name).CALLS) == 2


# ================================================================= the grid
def test_grid_with_plugin_problem_runs_and_records_identity(write_module, tmp_path):
    name = write_module()
    raw = {
        "run": {"seeds": [0], "max_iter": 3, "time_limit": 30},
        "problem": [{"name": "blobs", "dataset": f"{name}:load", "model": "logistic"}],
        "solver": [{"label": "gd", "solver": "gd"}],
    }
    config = config_from_dict(raw, "plugin-grid")
    store = ResultsStore(tmp_path / "results")
    summary = run_grid(config, store, progress=False)
    assert (summary.n_ran, summary.n_errors) == (1, 0)
    (record_path,) = (tmp_path / "results" / "runs").glob("*.json")
    record = json.loads(record_path.read_text())
    problem = record["configuration"]["problem"]
    assert problem["plugin"]["import"] == f"{name}:load"
    assert problem["data_sha256"] == _arrays_sha256(*__import__(name).data())
    frame = store.load()
    assert set(frame["problem"]) == {"blobs"}
    assert frame["status"].iloc[-1] != "error", frame["message"].iloc[-1]


def test_grid_with_a_failing_loader_fails_at_configuration(write_module):
    raw = {
        "run": {"seeds": [0], "max_iter": 3},
        "problem": [{"name": "broken", "dataset": f"{write_module()}:boom"}],
        "solver": [{"label": "gd", "solver": "gd"}],
    }
    with pytest.raises(ValueError, match=r"'broken'.*raised RuntimeError"):
        config_from_dict(raw, "plugin-grid")


def test_a_loader_failing_in_a_worker_is_a_recorded_error(write_module, tmp_path, monkeypatch):
    """Workers key and record their runs with the identity computed by the grid, so a
    loader that fails there (data out of a worker's reach) is a stored error run. (A
    worker reused from an earlier test may not see tmp_path on its sys.path: then the
    import fails in it, which is the same kind of failure, named by the same plugin.)"""
    monkeypatch.setenv("NATGRAD_TEST_PARENT", str(os.getpid()))
    target = f"{write_module()}:parent_only"
    raw = {
        "run": {"seeds": [0, 1], "max_iter": 3},
        "problem": [{"name": "remote", "dataset": target}],
        "solver": [{"label": "gd", "solver": "gd"}],
    }
    config = config_from_dict(raw, "plugin-grid")  # the loader runs here, in the parent
    store = ResultsStore(tmp_path / "results")
    summary = run_grid(config, store, n_jobs=2, progress=False)
    assert (summary.n_ran, summary.n_errors) == (2, 2)
    frame = store.load()
    assert set(frame["status"]) == {"error"}
    assert frame["message"].str.contains(target, regex=False).all(), frame["message"]
    assert set(frame["run_key"]) == {spec.key() for spec in config.specs()}


# =============================================================== entry points
@pytest.fixture
def installed(tmp_path, monkeypatch, write_module):
    """A distribution 'natgrad-test-datasets' 1.2.3 declaring two natgrad.problems entry
    points (one shadowed by a built-in), as pip would install it."""
    site = tmp_path / "site"
    module = write_module(folder=site)
    info = site / "natgrad_test_datasets-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: natgrad-test-datasets\nVersion: 1.2.3\n"
    )
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [natgrad.problems]
            test_blobs = {module}:load
            iris = {module}:boom
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    plugins.clear_cache()
    yield module
    plugins.clear_cache()


def test_entry_point_name_resolves_with_package_and_version(installed):
    problem = Problem("blobs", "test_blobs")
    d = problem.to_dict()
    assert d["plugin"]["import"] == f"{installed}:load"
    assert d["plugin"]["origin"] == "entry point"
    assert (d["plugin"]["package"], d["plugin"]["version"]) == ("natgrad-test-datasets", "1.2.3")
    assert d["data_sha256"] == _arrays_sha256(*__import__(installed).data())


def test_built_in_name_wins_over_entry_point(installed):
    problem = Problem("iris", "iris")
    assert not problem.is_plugin
    assert "plugin" not in problem.to_dict()
    problem.load()


def test_dataset_plugins_lists_installed_entry_points(installed):
    listed = {row["name"]: row for row in dataset_plugins()}
    assert listed["test_blobs"] == {
        "name": "test_blobs",
        "import": f"{installed}:load",
        "package": "natgrad-test-datasets",
        "version": "1.2.3",
        "note": "",
    }
    assert listed["iris"]["note"] == "shadowed by a built-in"
    assert "iris" in DATASETS


# ===================================================================== README
def test_the_readme_loader_and_problem_run_as_written(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("### Bring your own dataset", 1)[1].split("\n### ", 1)[0]
    (loader,) = re.findall(r"```python\n(# my_pkg/data\.py:.*?)```", section, flags=re.S)
    problem_toml, entry_points_toml = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "data.py").write_text(loader)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("my_pkg", "my_pkg.data"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    plugins.clear_cache()
    (entry,) = tomllib.loads(problem_toml)["problem"]
    problem = problem_from_dict(entry)
    problem.validate((0, 1))
    d = problem.to_dict()
    assert d["plugin"]["import"] == "my_pkg.data:load"
    assert d["metadata"]["license"] == "BSD-3-Clause"
    assert problem.load(0).X_train.shape == (375, 8)
    declared = tomllib.loads(entry_points_toml)["project"]["entry-points"]["natgrad.problems"]
    assert declared == {"my_data": entry["dataset"]}
    for name in ("my_pkg", "my_pkg.data"):
        sys.modules.pop(name, None)
