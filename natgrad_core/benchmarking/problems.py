"""Benchmark problems: data + model + objective (with its L2 strength) + seed.

A :class:`Problem` is a frozen description; :meth:`Problem.load` turns it into arrays
and a model. Data come from scikit-learn's bundled datasets, from ``make_classification``
(synthetic, for how cost grows with size), or from a file the user points at (LIBSVM /
svmlight, CSV, NPZ) — never from the network. Features are standardized with statistics
of the training split; the split is stratified and drawn afresh for every run seed.

Why the run seed redraws the split (repeated stratified hold-out, as scikit-learn's
``StratifiedShuffleSplit``) rather than bootstrapping the training set: a new split varies
the training *and* the test sample, so the spread over seeds of the final test metric is
the statistical spread of a held-out estimate; every training set keeps distinct samples,
the same size and the same class proportions, so iteration counts and cost per step stay
comparable across seeds. A bootstrap would duplicate about a third of the training
samples (changing the effective N and the conditioning of the problem) and leave one
fixed test set, so test metrics would vary by less than they truly do. Re-running one
seed repeats the same computation: that is a timing repeat, not a new sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ..models.mlp import MLP, LogisticModel

__all__ = ["PROBLEMS", "SUITES", "Problem", "ProblemData", "get_problem", "problem_from_dict"]

BUNDLED = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "iris": datasets.load_iris,
    "digits": datasets.load_digits,
}
MODELS = ("logistic", "mlp", "autoencoder")
FILE_FORMATS = ("svmlight", "csv", "npz")


@dataclass
class ProblemData:
    """Arrays and model of a loaded problem. For the autoencoder, y = X (targets)."""

    problem: Problem
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    model: MLP
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def alpha(self) -> float:
        return self.problem.alpha

    def content_hash(self) -> str:
        """SHA-256 of the training data, the model description and the L2 strength
        (computed once per loaded problem: hashing 100k x 1000 floats takes a second)."""
        if self._hash is None:
            self._hash = self._compute_hash()
        return self._hash

    def _compute_hash(self) -> str:
        h = hashlib.sha256()
        for arr in (self.X_train, self.y_train):
            a = np.ascontiguousarray(arr)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
        h.update(json.dumps(self.problem.model_spec(), sort_keys=True).encode())
        h.update(repr(float(self.problem.alpha)).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    name : unique label used in tables.
    dataset : a bundled name ("breast_cancer", "wine", "iris", "digits"), "synthetic",
        or "file".
    model : "logistic", "mlp" or "autoencoder".
    alpha : L2 strength (objective ``mean nll + alpha ‖W‖² / (2N)``).
    hidden, activation : the MLP / autoencoder architecture.
    seed : seeds the synthetic data, and with the run seed the train/test split
        (see :meth:`load`).
    test_size : fraction held out for test accuracy / error.
    n_samples, n_features, n_classes : synthetic sizes.
    path, format, label_column : for dataset="file".
    """

    name: str
    dataset: str
    model: str = "logistic"
    alpha: float = 1.0
    hidden: tuple = ()
    activation: str = "tanh"
    seed: int = 0
    test_size: float = 0.25
    n_samples: int = 0
    n_features: int = 0
    n_classes: int = 2
    path: str = ""
    format: str = ""
    label_column: int = -1

    def __post_init__(self):
        if self.dataset not in (*BUNDLED, "synthetic", "file"):
            raise ValueError(
                f"problem {self.name!r}: unknown dataset {self.dataset!r}; expected one of "
                f"{[*BUNDLED, 'synthetic', 'file']}."
            )
        if self.model not in MODELS:
            raise ValueError(
                f"problem {self.name!r}: unknown model {self.model!r}; expected one of {MODELS}."
            )
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"problem {self.name!r}: alpha must be >= 0, got {self.alpha!r}.")
        if not 0 < self.test_size < 1:
            raise ValueError(
                f"problem {self.name!r}: test_size must be in (0, 1), got {self.test_size!r}."
            )
        if self.model != "logistic" and not self.hidden:
            raise ValueError(f"problem {self.name!r}: model {self.model!r} needs hidden sizes.")
        if self.dataset == "synthetic" and (self.n_samples < 10 or self.n_features < 1):
            raise ValueError(
                f"problem {self.name!r}: synthetic data need n_samples >= 10 and "
                f"n_features >= 1, got {self.n_samples} and {self.n_features}."
            )
        if self.dataset == "file":
            if self.format not in FILE_FORMATS:
                raise ValueError(
                    f"problem {self.name!r}: file format must be one of {FILE_FORMATS}, "
                    f"got {self.format!r}."
                )
            if not Path(self.path).is_file():
                raise ValueError(f"problem {self.name!r}: data file not found: {self.path!r}.")

    @property
    def convex(self) -> bool:
        """Logistic regression is convex: a true optimum w* exists and is computed."""
        return self.model == "logistic"

    def model_spec(self) -> dict:
        return {"model": self.model, "hidden": list(self.hidden), "activation": self.activation}

    def to_dict(self) -> dict:
        """A JSON-ready description. For file data the path is replaced by the file's name
        and the SHA-256 of its bytes, so run keys follow the data, not how a path was typed."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        if self.dataset == "file":
            path = Path(self.path)
            d["path"] = path.name
            stat = path.stat()
            d["file_sha256"] = _file_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        return d

    # ------------------------------------------------------------------ loading
    def _raw(self):
        if self.dataset in BUNDLED:
            return BUNDLED[self.dataset](return_X_y=True)
        if self.dataset == "synthetic":
            return datasets.make_classification(
                n_samples=self.n_samples,
                n_features=self.n_features,
                n_informative=max(2, min(self.n_features, self.n_features // 2)),
                n_redundant=0,
                n_classes=self.n_classes,
                n_clusters_per_class=1,
                class_sep=1.0,
                flip_y=0.05,
                random_state=self.seed,
            )
        return _read_file(self.path, self.format, self.label_column)

    def load(self, seed: int = 0) -> ProblemData:
        """Arrays and model for run seed ``seed``, built once per process, problem and seed
        and then shared by every run of them (the arrays must not be modified). The split
        is seeded by a SeedSequence of (problem seed, run seed), so every run seed draws an
        independent split. A data file is re-read if it changed."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"run seed must be an integer >= 0, got {seed!r}.")
        split_seed = int(np.random.SeedSequence([self.seed, int(seed)]).generate_state(1)[0])
        stamp = None
        if self.dataset == "file":
            stat = Path(self.path).stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        return _load(self, split_seed, stamp)

    def _build(self, split_seed: int) -> ProblemData:
        X, y = self._raw()
        X = np.asarray(X, dtype=np.float64)
        _, y = np.unique(np.asarray(y), return_inverse=True)
        stratify = y if self.model != "autoencoder" else None
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=self.test_size, random_state=split_seed, stratify=stratify
        )
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
        n_features = X_tr.shape[1]
        n_classes = int(y.max()) + 1
        if self.model == "logistic":
            model = LogisticModel(n_features, n_classes)
        elif self.model == "mlp":
            head = "sigmoid" if n_classes == 2 else "softmax"
            model = MLP(n_features, n_classes, self.hidden, self.activation, head)
        else:
            model = MLP(n_features, n_features, self.hidden, self.activation, "gaussian")
            y_tr, y_te = X_tr, X_te
        return ProblemData(self, X_tr, y_tr, X_te, y_te, model)


@lru_cache(maxsize=2)
def _load(problem: Problem, split_seed: int, stamp) -> ProblemData:
    return problem._build(split_seed)


@lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_file(path: str, fmt: str, label_column: int):
    if fmt == "svmlight":
        X, y = datasets.load_svmlight_file(path)
        return X.toarray(), y
    if fmt == "npz":
        with np.load(path) as data:
            missing = {"X", "y"} - set(data.files)
            if missing:
                raise ValueError(
                    f"NPZ file {path!r} must contain arrays 'X' and 'y'; missing {sorted(missing)}."
                )
            return data["X"], data["y"]
    table = np.genfromtxt(path, delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] < 2 or np.isnan(table).any():
        raise ValueError(
            f"CSV file {path!r} must be a numeric table without header and with >= 2 columns."
        )
    y = table[:, label_column]
    X = np.delete(table, label_column % table.shape[1], axis=1)
    return X, y


def _registry() -> dict[str, Problem]:
    probs = [
        Problem("breast_cancer-logistic", "breast_cancer", alpha=1.0),
        Problem("wine-logistic", "wine", alpha=1.0),
        Problem("iris-logistic", "iris", alpha=1.0),
        Problem("digits-logistic", "digits", alpha=1.0),
        Problem("wine-mlp", "wine", "mlp", alpha=1e-2, hidden=(16,)),
        Problem("iris-mlp", "iris", "mlp", alpha=1e-2, hidden=(8,)),
        Problem("digits-mlp", "digits", "mlp", alpha=1e-3, hidden=(128, 128)),
        Problem("digits-autoencoder", "digits", "autoencoder", alpha=1e-4, hidden=(32, 8, 32)),
    ]
    for n, d, k in [
        (1_000, 20, 2),
        (10_000, 100, 2),
        (100_000, 1_000, 2),
        (1_000, 20, 10),
        (10_000, 100, 10),
        (100_000, 1_000, 10),
    ]:
        probs.append(
            Problem(
                f"synthetic-n{n}-d{d}-k{k}",
                "synthetic",
                alpha=1.0,
                n_samples=n,
                n_features=d,
                n_classes=k,
            )
        )
    return {p.name: p for p in probs}


PROBLEMS: dict[str, Problem] = _registry()

_QUICK = [
    "breast_cancer-logistic",
    "wine-logistic",
    "iris-logistic",
    "digits-logistic",
    "wine-mlp",
    "iris-mlp",
]
SUITES: dict[str, list[str]] = {
    "quick": _QUICK,
    "full": [*_QUICK, "digits-mlp", "digits-autoencoder"],
    "scaling": [name for name in PROBLEMS if name.startswith("synthetic-")],
}


def get_problem(name: str) -> Problem:
    if name not in PROBLEMS:
        raise ValueError(f"Unknown problem {name!r}; expected one of {sorted(PROBLEMS)}.")
    return PROBLEMS[name]


def problem_from_dict(spec: dict) -> Problem:
    """A problem from a config table (e.g. ``[[problem]]`` in TOML); unknown keys raise."""
    allowed = set(Problem.__dataclass_fields__)
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(
            f"problem {spec.get('name', '?')!r}: unknown keys {sorted(unknown)}; "
            f"expected some of {sorted(allowed)}."
        )
    if "name" not in spec or "dataset" not in spec:
        raise ValueError(f"problem entry {spec!r} needs at least 'name' and 'dataset'.")
    spec = dict(spec)
    if "hidden" in spec:
        spec["hidden"] = tuple(spec["hidden"])
    return Problem(**spec)
