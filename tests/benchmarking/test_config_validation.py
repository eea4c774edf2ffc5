"""Bad configurations and bad data files stop ``natgrad run`` before the first run.

Every case is a TOML file (and the data files it names) that used to start the grid and
store ``error`` runs, crash with a traceback, or run silently wrong (a NaN label as a
third class, a NaN feature scored in the test split). Each must exit 2 with one line that
names the configuration file, the entry and what was expected, and write nothing.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn import datasets

from natgrad_core.benchmarking.grid import load_config
from natgrad_core.benchmarking.problems import Problem
from tests.benchmarking.test_cli import run_cli

# ------------------------------------------------------------------------------ data files
X_IRIS, Y_IRIS = datasets.load_iris(return_X_y=True)


def csv_text(X=X_IRIS, y=Y_IRIS) -> bytes:
    """Rows "x1,...,xd,label" as bytes; NaN and inf are written as numpy prints them."""
    return "".join(
        ",".join(repr(float(v)) for v in [*row, label]) + "\n" for row, label in zip(X, y)
    ).encode()


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def with_value(array, row, col, value):
    out = np.array(array, dtype=float)
    out[row, col] = value
    return out


def with_label(labels, row, value):
    out = np.array(labels, dtype=float)
    out[row] = value
    return out


def svm_text(rows) -> bytes:
    return "".join(rows).encode()


GOOD_SVM = [
    f"{int(k)} " + " ".join(f"{j + 1}:{v}" for j, v in enumerate(x)) + "\n"
    for x, k in zip(X_IRIS, Y_IRIS)
]

# (id, format, file content, fragments the message must contain)
DATA_CASES = [
    ("csv-binary-garbage", "csv", b"\x89PNG\r\n\x1a\n\x00\x00garbage", ["numeric table"]),
    ("csv-empty", "csv", b"", ["numeric table", ">= 1 row"]),
    ("csv-header-only", "csv", b"x1,x2,label\n", ["without header"]),
    ("csv-header-and-rows", "csv", b"x1,x2,label\n" + csv_text(), ["without header"]),
    ("csv-nan-feature", "csv", csv_text(with_value(X_IRIS, 7, 1, np.nan)), ["NaN or inf"]),
    ("csv-inf-feature", "csv", csv_text(with_value(X_IRIS, 140, 0, np.inf)), ["NaN or inf"]),
    ("csv-string-feature", "csv", csv_text().replace(b"5.1", b"abc", 1), ["'abc'"]),
    ("csv-ragged-rows", "csv", csv_text() + b"1.0,2.0\n", ["number of columns"]),
    ("csv-one-class", "csv", csv_text(y=np.zeros(150)), ["at least 2 classes"]),
    ("csv-one-row", "csv", b"1.0,2.0,0\n", ["at least 2 classes"]),
    ("csv-one-feature-column-only", "csv", b"0\n1\n0\n1\n", [">= 2 columns"]),
    ("csv-nan-label", "csv", csv_text(y=with_label(Y_IRIS, 3, np.nan)), ["y", "NaN"]),
    ("csv-too-few-for-split", "csv", csv_text(X_IRIS[[0, 1, 50, 51]], [0, 0, 1, 1]), ["split"]),
    ("npz-wrong-names", "npz", npz_bytes(features=X_IRIS, labels=Y_IRIS), ["'X'", "'y'"]),
    ("npz-only-X", "npz", npz_bytes(X=X_IRIS), ["missing ['y']"]),
    ("npz-length-mismatch", "npz", npz_bytes(X=X_IRIS, y=Y_IRIS[:-1]), ["150 rows", "149"]),
    ("npz-1d-X", "npz", npz_bytes(X=X_IRIS[:, 0], y=Y_IRIS), ["2-dimensional", "(150,)"]),
    ("npz-3d-X", "npz", npz_bytes(X=X_IRIS.reshape(150, 2, 2), y=Y_IRIS), ["2-dimensional"]),
    ("npz-2d-y", "npz", npz_bytes(X=X_IRIS, y=Y_IRIS[:, None]), ["1-dimensional"]),
    (
        "npz-object-arrays",
        "npz",
        npz_bytes(X=np.array([[{"a": 1}]] * 150, dtype=object), y=Y_IRIS),
        ["Object arrays"],
    ),
    ("npz-string-X", "npz", npz_bytes(X=X_IRIS.astype(str), y=Y_IRIS), ["real numbers"]),
    ("npz-complex-X", "npz", npz_bytes(X=X_IRIS * (1 + 1j), y=Y_IRIS), ["real numbers"]),
    ("npz-nan-label", "npz", npz_bytes(X=X_IRIS, y=with_label(Y_IRIS, 0, np.nan)), ["NaN"]),
    ("npz-given-npy", "npz", npy_bytes(X_IRIS), [".npy"]),
    ("npz-binary-garbage", "npz", b"\x00\x01garbage" * 10, ["not an NPZ"]),
    ("npz-truncated", "npz", npz_bytes(X=X_IRIS, y=Y_IRIS)[:200], ["NPZ"]),
    ("svm-malformed", "svmlight", b"1 1:1 2:\n0 1:3\n", ["LIBSVM"]),
    ("svm-unsorted", "svmlight", b"1 2:1 1:1\n0 1:1\n", ["LIBSVM", "sorted"]),
    ("svm-binary-garbage", "svmlight", b"\x00\xff\xfe\x89garbage", ["LIBSVM"]),
    ("svm-index-overflow", "svmlight", b"1 1:1 99999999999:1\n0 1:1\n", ["32 bits"]),
    (
        # 150 rows, largest index 10**9: 1.1 TiB once densified
        "svm-densifies-to-a-terabyte",
        "svmlight",
        svm_text(GOOD_SVM[:-1] + ["1 1:1 1000000000:1\n"]),
        ["GiB", "1000000000 features"],
    ),
    ("svm-nan-label", "svmlight", svm_text(["nan 1:1\n", *GOOD_SVM]), ["NaN"]),
    ("svm-empty", "svmlight", b"", ["at least 2 classes"]),
]

# ----------------------------------------------------------------------- configurations
RUN = {"problems": '["p"]', "seeds": "[0]", "max_iter": "2"}


def toml(run=None, problem='dataset = "iris"', extra="") -> str:
    lines = "\n".join(f"{k} = {v}" for k, v in {**RUN, **(run or {})}.items() if v is not None)
    return (
        f'[run]\n{lines}\n\n[[solver]]\nsolver = "gd"\n\n'
        f'[[problem]]\nname = "p"\n{problem}\n{extra}'
    )


def solver_toml(body: str) -> str:
    """A registry problem and one ``[[solver]]`` entry whose lines are ``body``."""
    return f'[run]\nproblems = ["iris-logistic"]\nseeds = [0]\nmax_iter = 2\n\n[[solver]]\n{body}\n'


# (id, TOML text, fragments the message must contain)
CONFIG_CASES = [
    # [[problem]] fields
    ("alpha-string", toml(problem='dataset = "iris"\nalpha = "0.1"'), ["'p'", "alpha", "str"]),
    ("alpha-negative", toml(problem='dataset = "iris"\nalpha = -1.0'), ["alpha", ">= 0"]),
    ("alpha-nan", toml(problem='dataset = "iris"\nalpha = nan'), ["alpha", "finite"]),
    (
        "hidden-int",
        toml(problem='dataset = "iris"\nmodel = "mlp"\nhidden = 16'),
        ["hidden", "[16]", "16"],
    ),
    ("hidden-zero", toml(problem='dataset = "iris"\nmodel = "mlp"\nhidden = [0]'), ["hidden"]),
    ("hidden-strings", toml(problem='dataset = "iris"\nmodel = "mlp"\nhidden = ["8"]'), ["hidden"]),
    ("mlp-without-hidden", toml(problem='dataset = "iris"\nmodel = "mlp"'), ["hidden"]),
    ("seed-negative", toml(problem='dataset = "iris"\nseed = -1'), ["seed", "-1"]),
    ("seed-huge", toml(problem='dataset = "iris"\nseed = 4294967296'), ["seed", "4294967296"]),
    ("seed-float", toml(problem='dataset = "iris"\nseed = 1.5'), ["seed", "integer"]),
    (
        "activation-unknown",
        toml(problem='dataset = "iris"\nmodel = "mlp"\nhidden = [4]\nactivation = "swish"'),
        ["activation", "'swish'", "tanh"],
    ),
    (
        "n-classes-one",
        toml(problem='dataset = "synthetic"\nn_samples = 50\nn_features = 4\nn_classes = 1'),
        ["n_classes", ">= 2"],
    ),
    (
        "n-classes-too-many-for-features",
        toml(problem='dataset = "synthetic"\nn_samples = 50\nn_features = 2\nn_classes = 9'),
        ["n_classes = 9"],
    ),
    (
        "n-features-one",
        toml(problem='dataset = "synthetic"\nn_samples = 50\nn_features = 1'),
        ["n_features >= 2"],
    ),
    ("test-size-one", toml(problem='dataset = "iris"\ntest_size = 1.0'), ["test_size"]),
    ("test-size-string", toml(problem='dataset = "iris"\ntest_size = "a quarter"'), ["test_size"]),
    ("model-unknown", toml(problem='dataset = "iris"\nmodel = "svm"'), ["'svm'"]),
    ("dataset-unknown", toml(problem='dataset = "mnist"'), ["'mnist'"]),
    ("dataset-not-string", toml(problem="dataset = 3"), ["dataset", "string"]),
    ("key-unknown", toml(problem='dataset = "iris"\ncolour = "red"'), ["'colour'"]),
    ("problem-without-dataset", toml(problem=""), ["'dataset'"]),
    (
        "file-missing",
        toml(problem='dataset = "file"\npath = "absent.csv"\nformat = "csv"'),
        ["absent.csv", "not found"],
    ),
    (
        "file-format-unknown",
        toml(problem='dataset = "file"\npath = "data.csv"\nformat = "parquet"'),
        ["'parquet'"],
    ),
    (
        "label-column-out-of-range",
        toml(problem='dataset = "file"\npath = "data.csv"\nformat = "csv"\nlabel_column = 5'),
        ["label_column = 5", "5 columns"],
    ),
    # budgets
    ("time-limit-inf", toml({"time_limit": "inf"}), ["time_limit", "finite"]),
    ("time-limit-nan", toml({"time_limit": "nan"}), ["time_limit", "finite"]),
    ("time-limit-zero", toml({"time_limit": "0"}), ["time_limit", "> 0"]),
    ("time-limit-string", toml({"time_limit": '"10s"'}), ["time_limit", "str"]),
    ("tol-nan", toml({"tol": "nan"}), ["tol", "finite"]),
    ("tol-negative", toml({"tol": "-1e-3"}), ["tol", ">= 0"]),
    ("target-nan", toml({"target_suboptimality": "nan"}), ["target_suboptimality", "finite"]),
    ("target-inf", toml({"target_suboptimality": "inf"}), ["target_suboptimality"]),
    ("max-iter-zero", toml({"max_iter": "0"}), ["max_iter", ">= 1"]),
    ("max-iter-float", toml({"max_iter": "1e3"}), ["max_iter", "int"]),
    ("batch-size-negative", toml({"batch_size": "-5"}), ["batch_size", ">= 0"]),
    ("fidelity-string", toml({"fidelity": '"yes"'}), ["fidelity", "bool"]),
    ("seeds-negative", toml({"seeds": "[-1]"}), ["seeds", "-1"]),
    ("seeds-huge", toml({"seeds": "[18446744073709551615]"}), ["seeds", "4294967295"]),
    ("seeds-float", toml({"seeds": "[0.5]"}), ["seed", "0.5"]),
    ("seeds-empty", toml({"seeds": "[]"}), ["seeds", "at least one"]),
    ("seeds-duplicate", toml({"seeds": "[1, 1]"}), ["duplicate seeds"]),
    ("seeds-scalar", toml({"seeds": "3"}), ["seeds", "list"]),
    # TOML shapes
    ("run-scalar", 'run = 5\n[[problem]]\nname = "p"\ndataset = "iris"\n', ["[run]", "run = 5"]),
    ("run-array", '[[run]]\nproblems = ["iris-logistic"]\n', ["[run]", "[[run]]"]),
    ("problem-string", 'problem = "x"\n[run]\nproblems = ["iris-logistic"]\n', ["[[problem]]"]),
    ("problem-table", '[run]\nproblems = ["p"]\n[problem]\nname = "p"\n', ["[[problem]]"]),
    ("solver-int", 'solver = 3\n[run]\nproblems = ["iris-logistic"]\n', ["[[solver]]", "3"]),
    (
        "solver-table",
        '[run]\nproblems = ["iris-logistic"]\n[solver]\nsolver = "gd"\n',
        ["[solver]"],
    ),
    ("suite-list", '[run]\nsuite = ["quick"]\n', ["suite", "str"]),
    ("table-unknown", '[runs]\nproblems = ["iris-logistic"]\n', ["'runs'"]),
    # duplicates and empty lists
    (
        "problem-name-twice",
        toml(extra='\n[[problem]]\nname = "p"\ndataset = "wine"\n'),
        ["two [[problem]]", "'p'"],
    ),
    ("problem-listed-twice", toml({"problems": '["p", "p"]'}), ["['p']", "more than once"]),
    ("problems-empty", toml({"problems": "[]"}), ["problems", "empty"]),
    ("problem-name-unknown", toml({"problems": '["q"]'}), ["'q'"]),
    ("problem-name-not-string", toml({"problems": "[1]"}), ["1"]),
    ("no-problems", "[run]\nseeds = [0]\n", ["no problems"]),
    # [[solver]] and its [solver.params]
    (
        "solver-param-in-both-places",
        solver_toml('solver = "gd"\nlearning_rate = 0.5\n[solver.params]\nlearning_rate = 0.1'),
        ["'gd'", "['learning_rate']", "both", "[solver.params]"],
    ),
    (
        "solver-params-not-a-table",
        solver_toml('solver = "gd"\nparams = 3'),
        ["'gd'", "[solver.params]", "3"],
    ),
    (
        "solver-params-key-unknown",
        solver_toml('solver = "gd"\n[solver.params]\ncolour = 1'),
        ["'gd'", "'colour'", "learning_rate"],
    ),
    (
        "solver-params-before-solver",
        '[run]\nproblems = ["iris-logistic"]\n[solver.params]\nstep = "fixed"\n',
        ["[[solver]]", "[solver]"],
    ),
]


def assert_refused(tmp_path, config, fragments, *extra_args):
    out = tmp_path / "results"
    code, stdout, stderr = run_cli("run", config, "--out", out, "--quiet", *extra_args)
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1, stderr  # one line
    assert stderr.startswith(f"natgrad run: {config}: "), stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@pytest.mark.parametrize(
    ("fmt", "content", "fragments"),
    [case[1:] for case in DATA_CASES],
    ids=[case[0] for case in DATA_CASES],
)
def test_bad_data_file_is_refused_before_any_run(tmp_path, fmt, content, fragments):
    (tmp_path / "data.bin").write_bytes(content)
    config = tmp_path / "bad.toml"
    config.write_text(toml(problem=f'dataset = "file"\npath = "data.bin"\nformat = "{fmt}"'))
    assert_refused(tmp_path, config, ["problem 'p'", "data.bin", *fragments])


@pytest.mark.parametrize(
    ("text", "fragments"),
    [case[1:] for case in CONFIG_CASES],
    ids=[case[0] for case in CONFIG_CASES],
)
def test_bad_configuration_is_refused_before_any_run(tmp_path, text, fragments):
    (tmp_path / "data.csv").write_bytes(csv_text())
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert_refused(tmp_path, config, fragments)


@pytest.mark.parametrize(
    ("seeds", "fragments"),
    [("-1", ["-1"]), ("4294967296", ["4294967296"]), ("x", ["'x'"])],
)
def test_bad_command_line_seeds_are_refused(tmp_path, seeds, fragments):
    config = tmp_path / "ok.toml"
    config.write_text(toml())
    out = tmp_path / "results"
    code, _, stderr = run_cli("run", config, "--out", out, "--quiet", "--seeds", seeds)
    assert code == 2 and "Traceback" not in stderr
    assert all(f in stderr for f in fragments), stderr
    assert not out.exists()


def test_unreadable_data_file_is_a_clear_error(tmp_path):
    # tests run as root, so permissions cannot make a file unreadable; a directory can
    (tmp_path / "data.csv").mkdir()
    config = tmp_path / "bad.toml"
    config.write_text(toml(problem='dataset = "file"\npath = "data.csv"\nformat = "csv"'))
    assert_refused(tmp_path, config, ["cannot read data file", "data.csv"])


def test_unreadable_configuration_is_a_clear_error(tmp_path, monkeypatch):
    config = tmp_path / "bad.toml"
    config.write_text(toml())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(config), "read_text", refuse)
    assert_refused(tmp_path, config, ["Permission denied"])


def test_data_file_is_read_once_for_validation_hashing_and_loading(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_bytes(csv_text())
    config = tmp_path / "ok.toml"
    config.write_text(
        toml({"seeds": "[0, 1]"}, 'dataset = "file"\npath = "data.csv"\nformat = "csv"')
    )
    reads = []
    read_bytes = type(path).read_bytes

    def counting(self):
        reads.append(self.name)
        return read_bytes(self)

    monkeypatch.setattr(type(path), "read_bytes", counting)
    grid = load_config(str(config))
    for spec in grid.specs():
        spec.key()
        spec.problem.load(spec.seed)
    assert reads == ["data.csv"]


# ------------------------------------------------------- §3: labels and features, never wrong
def test_nan_label_is_not_an_extra_class(tmp_path):
    # used to train a 3-class softmax on a binary problem and exit 0
    y = (Y_IRIS[:100] == 1).astype(float)
    y[5] = np.nan
    path = tmp_path / "binary.csv"
    path.write_bytes(csv_text(X_IRIS[:100], y))
    problem = Problem("b", "file", path=str(path), format="csv")
    with pytest.raises(ValueError, match=r"binary\.csv.*y \(labels\) contains 1 NaN"):
        problem.load()


@pytest.mark.parametrize("seed", range(4))
def test_nan_feature_is_refused_whichever_split_it_lands_in(tmp_path, seed):
    X = with_value(X_IRIS, 149, 2, np.nan)
    path = tmp_path / "one_nan.npz"
    path.write_bytes(npz_bytes(X=X, y=Y_IRIS))
    problem = Problem("n", "file", path=str(path), format="npz")
    with pytest.raises(ValueError, match=r"one_nan\.npz.*1 NaN or infinite"):
        problem.load(seed)


# -------------------------------------------------- [solver.params]: same runs as the flat form
EQUIVALENT_SOLVER_FORMS = [
    # (id, flat lines, [solver.params] lines)
    (
        "no-hyperparameters",
        'solver = "gd"\nlabel = "g"',
        'solver = "gd"\nlabel = "g"\n[solver.params]',
    ),
    (
        "two-hyperparameters",
        'label = "m"\nsolver = "momentum"\nlearning_rate = 0.05\nnesterov = true',
        'label = "m"\nsolver = "momentum"\n[solver.params]\nlearning_rate = 0.05\nnesterov = true',
    ),
    (
        "label-defaults-to-the-solver",
        'solver = "kfac"\nkfac_damping = "per_factor"\ndamping = 1e-3',
        'solver = "kfac"\n[solver.params]\ndamping = 1e-3\nkfac_damping = "per_factor"',
    ),
    (
        "split-between-both-places",
        'solver = "adam"\nlearning_rate = 0.02\nbeta1 = 0.8',
        'solver = "adam"\nbeta1 = 0.8\n[solver.params]\nlearning_rate = 0.02',
    ),
]


@pytest.mark.parametrize(
    ("flat", "nested"),
    [case[1:] for case in EQUIVALENT_SOLVER_FORMS],
    ids=[case[0] for case in EQUIVALENT_SOLVER_FORMS],
)
def test_solver_params_table_gives_the_runs_of_the_flat_form(tmp_path, flat, nested):
    grids = []
    for name, lines in (("flat", flat), ("nested", nested)):
        path = tmp_path / f"{name}.toml"
        path.write_text(solver_toml(lines))
        grids.append(load_config(str(path)))
    flat_grid, nested_grid = grids
    assert [s.key() for s in nested_grid.specs()] == [s.key() for s in flat_grid.specs()]
    assert [s.config_id() for s in nested_grid.specs()] == [
        s.config_id() for s in flat_grid.specs()
    ]
    assert nested_grid.solvers == flat_grid.solvers
