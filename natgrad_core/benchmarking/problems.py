"""Benchmark problems: data + model + objective (with its L2 strength) + seed.

A :class:`Problem` is a frozen description; :meth:`Problem.load` turns it into arrays
and a model. Data come from scikit-learn's bundled datasets, from ``make_classification``
(synthetic, for how cost grows with size), from a file the user points at (LIBSVM /
svmlight, CSV, NPZ), or from a dataset plugin: a loader named by import path
``"package.module:loader"`` or by an installed ``natgrad.problems`` entry point (see
:data:`LOADER_PROTOCOL`); natgrad itself never reads from the network. Features are
standardized with statistics of the training split; the split is stratified and drawn
afresh for every run seed.

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
import io
import json
import numbers
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from .. import plugins
from .._validation import check_choice, check_finite_array, check_nonnegative
from ..models.mlp import ACTIVATIONS, MLP, LogisticModel

__all__ = [
    "DATASETS",
    "PROBLEMS",
    "SUITES",
    "PluginData",
    "Problem",
    "ProblemData",
    "dataset_plugins",
    "get_problem",
    "problem_from_dict",
]

BUNDLED = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "iris": datasets.load_iris,
    "digits": datasets.load_digits,
}
DATASETS = (*BUNDLED, "synthetic", "file")
"""The built-in dataset names; they take precedence over entry points of the same name."""
LOADER_PROTOCOL = (
    "a callable taking no arguments that returns (X, y) or (X, y, metadata): X an array of "
    "shape (n_samples, n_features) of finite numbers with n_features >= 1, y an array of "
    "shape (n_samples,) of finite labels, metadata a dict of JSON values (e.g. description, "
    "source, license)"
)
"""What a dataset plugin is (the words every error about one repeats)."""
MODELS = ("logistic", "mlp", "autoencoder")
FILE_FORMATS = ("svmlight", "csv", "npz")
MAX_SEED = 2**32 - 1
"""Largest problem seed: scikit-learn's ``random_state`` (the synthetic data) takes < 2**32."""
MAX_DENSE_BYTES = 8 * 2**30
"""Largest dense feature matrix (bytes, float64) a sparse LIBSVM file is densified to."""


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
        "file", or a dataset plugin: an import path ``"package.module:loader"`` or the
        name of an installed ``natgrad.problems`` entry point (built-in names win).
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
        if isinstance(self.hidden, list):  # as TOML and JSON write it
            object.__setattr__(self, "hidden", tuple(self.hidden))
        try:
            self._check_fields()
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"problem {self.name!r}: {exc}") from None

    def _check_fields(self):
        for key in ("name", "dataset", "model", "activation", "path", "format"):
            _check_field_type(getattr(self, key), key, str)
        for key in ("seed", "n_samples", "n_features", "n_classes", "label_column"):
            _check_field_type(getattr(self, key), key, int)
        if not self.name:
            raise ValueError("name must be a non-empty string, got ''.")
        if self.is_plugin:
            self._check_plugin()
        check_choice(self.model, "model", MODELS)
        check_choice(self.activation, "activation", ACTIVATIONS)
        check_nonnegative(self.alpha, "alpha")
        test_size = check_nonnegative(self.test_size, "test_size")
        if not 0 < test_size < 1:
            raise ValueError(f"test_size must be in (0, 1), got {self.test_size!r}.")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}.")
        if not isinstance(self.hidden, tuple) or not all(
            _is_int(h) and h >= 1 for h in self.hidden
        ):
            raise TypeError(
                f"hidden must be a list of layer sizes >= 1 such as [16], got {self.hidden!r}."
            )
        if self.model != "logistic" and not self.hidden:
            raise ValueError(f"model {self.model!r} needs hidden sizes.")
        if self.dataset == "synthetic":
            if self.n_samples < 10 or self.n_features < 2 or self.n_classes < 2:
                raise ValueError(
                    "synthetic data need n_samples >= 10, n_features >= 2 and "
                    f"n_classes >= 2, got {self.n_samples}, {self.n_features} and "
                    f"{self.n_classes}."
                )
            if self.n_classes > 2**self.n_informative:
                raise ValueError(
                    f"synthetic data with {self.n_features} features have "
                    f"{self.n_informative} informative ones, which separate at most "
                    f"{2**self.n_informative} classes; got n_classes = {self.n_classes}."
                )
        if self.dataset == "file":
            check_choice(self.format, "file format", FILE_FORMATS)
            if not Path(self.path).exists():
                raise ValueError(f"data file not found: {self.path!r}.")

    def _check_plugin(self):
        installed = sorted(plugins.entry_point_names(plugins.DATASET_GROUP))
        if self.dataset not in installed and not plugins.is_import_path(self.dataset):
            raise ValueError(
                f"Unknown dataset {self.dataset!r}; expected one of {list(DATASETS)}, an "
                f"import path 'package.module:loader' or the name of an installed "
                f"{plugins.DATASET_GROUP!r} entry point (installed: {installed or 'none'})."
            )
        try:
            plugin = self.dataset_plugin()
        except plugins.PluginError as exc:
            raise plugins.PluginError(
                f"dataset {str(exc).rstrip('.')}. Expected an importable "
                f"'package.module:loader', the loader {LOADER_PROTOCOL}."
            ) from None
        if not callable(plugin.obj):
            raise plugins.PluginError(
                f"dataset plugin {self.dataset!r}: expected {LOADER_PROTOCOL}; got an "
                f"object of type {type(plugin.obj).__name__}, which is not callable."
            )

    @property
    def is_plugin(self) -> bool:
        """Whether the data come from a dataset plugin rather than a built-in dataset."""
        return self.dataset not in DATASETS

    @property
    def n_informative(self) -> int:
        """Informative features of synthetic data: half of them, at least 2."""
        return max(2, min(self.n_features, self.n_features // 2))

    @property
    def convex(self) -> bool:
        """Logistic regression is convex: a true optimum w* exists and is computed."""
        return self.model == "logistic"

    def model_spec(self) -> dict:
        return {"model": self.model, "hidden": list(self.hidden), "activation": self.activation}

    def to_dict(self) -> dict:
        """A JSON-ready description. For file data the path is replaced by the file's name
        and the SHA-256 of its bytes, so run keys follow the data, not how a path was typed.
        Plugin data add the plugin's identity (``plugin``), the SHA-256 of the loaded
        arrays (``data_sha256``) and the loader's ``metadata``."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        if self.dataset == "file":
            d["path"] = Path(self.path).name
            d["file_sha256"] = self.read_file().sha256
        elif self.is_plugin:
            d.update(self._plugin_stamp)
        return d

    @cached_property
    def _plugin_stamp(self) -> dict:
        # computed once per Problem object and pickled with it: a worker process keys
        # and records its runs as the grid did, without calling the loader again
        data = self.plugin_data()
        return {
            "plugin": data.plugin.identity(),
            "data_sha256": data.sha256,
            "metadata": data.metadata,
        }

    # ------------------------------------------------------------------ loading
    def _raw(self):
        if self.dataset in BUNDLED:
            return BUNDLED[self.dataset](return_X_y=True)
        if self.dataset == "synthetic":
            return datasets.make_classification(
                n_samples=self.n_samples,
                n_features=self.n_features,
                n_informative=self.n_informative,
                n_redundant=0,
                n_classes=self.n_classes,
                n_clusters_per_class=1,
                class_sep=1.0,
                flip_y=0.05,
                random_state=self.seed,
            )
        if self.is_plugin:
            data = self.plugin_data()
            return data.X, data.y
        return self.read_file().arrays()

    def read_file(self) -> FileData:
        """The data file read and checked once while it is unchanged (validation, run keys
        and loading share the one read); ValueError naming the file if it cannot be read."""
        if self.dataset != "file":
            raise ValueError(f"problem {self.name!r} reads no file (dataset {self.dataset!r}).")
        path = Path(self.path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise ValueError(f"cannot read data file {self.path!r}: {exc.strerror}.") from None
        return _read_file(
            str(path.resolve()), self.format, self.label_column, stat.st_mtime_ns, stat.st_size
        )

    def dataset_plugin(self) -> plugins.Plugin:
        """The dataset plugin (imported, not called); PluginError naming it if it cannot
        be found or imported, ValueError for a built-in dataset."""
        if not self.is_plugin:
            raise ValueError(
                f"problem {self.name!r} uses the built-in dataset {self.dataset!r}, no plugin."
            )
        return plugins.load(self.dataset, plugins.DATASET_GROUP)

    def plugin_data(self) -> PluginData:
        """The dataset plugin's data, loaded and checked once per process and plugin
        version (validation, run keys and loading share the one call; a loader that
        raises is called again next time). ValueError naming this problem and the plugin
        if the loader raises or returns anything but :data:`LOADER_PROTOCOL`."""
        plugin = self.dataset_plugin()
        try:
            return _load_plugin(plugin)
        except ValueError as exc:
            raise ValueError(f"problem {self.name!r}: {exc}") from None

    def validate(self, seeds=(0,)) -> None:
        """Raise ValueError naming this problem if it cannot be loaded for ``seeds``.

        A data file is read and checked (see :meth:`read_file`), a dataset plugin's loader
        is called and its result checked (see :meth:`plugin_data`), and the data are split
        for every seed, so data too small to stratify fail here and not in a run. Bundled
        and synthetic data are checked by their fields alone (generating the 100k-sample
        synthetic problems to check them would cost what a run costs).
        """
        if self.dataset != "file" and not self.is_plugin:
            return
        if self.is_plugin:
            self.plugin_data()  # names the problem itself
        for seed in seeds:
            try:
                self.load(seed)
            except ValueError as exc:
                raise ValueError(f"problem {self.name!r}: {exc}") from None

    def load(self, seed: int = 0) -> ProblemData:
        """Arrays and model for run seed ``seed``, built once per process, problem and seed
        and then shared by every run of them (the arrays must not be modified). The split
        is seeded by a SeedSequence of (problem seed, run seed), so every run seed draws an
        independent split. A data file is re-read if it changed; a dataset plugin's loader
        is called once per process."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"run seed must be an integer >= 0, got {seed!r}.")
        split_seed = int(np.random.SeedSequence([self.seed, int(seed)]).generate_state(1)[0])
        stamp = None
        if self.dataset == "file":
            stamp = self.read_file().sha256
        elif self.is_plugin:
            stamp = self.plugin_data().sha256
            keyed = self._plugin_stamp["data_sha256"]
            if stamp != keyed:
                raise ValueError(
                    f"problem {self.name!r}: dataset plugin {self.dataset!r} returned other "
                    f"data than when the problem was keyed: expected arrays with SHA-256 "
                    f"{keyed}, got {stamp} (a loader must return the same data every time)."
                )
        return _load(self, split_seed, stamp)

    def _build(self, split_seed: int) -> ProblemData:
        X, y = self._raw()
        X = check_finite_array(X, "X", ndim=2, dtype=np.float64)
        classes, y, counts = np.unique(
            check_finite_array(y, "y", ndim=1), return_inverse=True, return_counts=True
        )
        stratify = y if self.model != "autoencoder" else None
        where = self.dataset
        if self.dataset == "file":
            where = f"data file {self.path!r}"
        elif self.is_plugin:
            where = f"dataset plugin {self.dataset!r}"
        if stratify is not None and (len(classes) < 2 or counts.min() < 2):
            raise ValueError(
                f"{where}: expected at least 2 classes with at least 2 samples each (the "
                f"split is stratified), got {X.shape[0]} samples in classes "
                f"{dict(zip(classes.tolist(), counts.tolist()))}."
            )
        try:
            X_tr, X_te, y_tr, y_te = train_test_split(
                X, y, test_size=self.test_size, random_state=split_seed, stratify=stratify
            )
        except ValueError as exc:
            raise ValueError(
                f"{where}: cannot split {X.shape[0]} samples with "
                f"test_size={self.test_size} ({exc})."
            ) from None
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


@dataclass(frozen=True)
class FileData:
    """A data file read once: the SHA-256 of its bytes and, if they parse and pass the
    checks, features X (n_samples, n_features) and labels y (n_samples,); otherwise
    ``error`` says what is wrong. A damaged file still has a hash, so the runs of a file
    broken after validation get keys and are stored as errors."""

    sha256: str
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    error: str = ""

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, y), or ValueError with :attr:`error`."""
        if self.error:
            raise ValueError(self.error)
        return self.X, self.y


@lru_cache(maxsize=2)
def _read_file(path: str, fmt: str, label_column: int, mtime_ns: int, size: int) -> FileData:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read data file {path!r}: {exc.strerror}.") from None
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        X, y = _PARSERS[fmt](io.BytesIO(raw), label_column)
        X = check_finite_array(X, "X (features)", ndim=2, dtype=np.float64)
        y = check_finite_array(y, "y (labels)", ndim=1)
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels.")
        if X.shape[1] == 0:
            raise ValueError("expected at least one feature, got 0.")
    except ValueError as exc:
        return FileData(sha256, error=f"{fmt} data file {path!r}: {exc}")
    return FileData(sha256, X, y)


@dataclass(frozen=True)
class PluginData:
    """What a dataset plugin's loader returned, checked: features X (n_samples,
    n_features) as float64 and labels y (n_samples,), both read-only copies; the loader's
    metadata as JSON values; the SHA-256 of the arrays (dtype, shape and bytes); and the
    plugin that loaded them."""

    plugin: plugins.Plugin
    X: np.ndarray
    y: np.ndarray
    metadata: dict
    sha256: str


@cache
def _load_plugin(plugin: plugins.Plugin) -> PluginData:
    # keyed on the plugin's identity (target, package version, source hash): a new
    # version of the loader's code is loaded anew; functools.cache keeps no exceptions
    where = f"dataset plugin {plugin.name!r}"
    if plugin.target != plugin.name:
        where += f" ({plugin.target})"
    try:
        result = plugin.obj()
    except Exception as exc:  # a plugin's loader may raise anything
        raise plugins.PluginError(
            f"{where} raised {type(exc).__name__}: {exc}; expected {LOADER_PROTOCOL}."
        ) from exc
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        got = f"a {type(result).__name__}"
        if isinstance(result, (tuple, list)):
            got += f" of length {len(result)}"
        raise plugins.PluginError(f"{where}: expected {LOADER_PROTOCOL}; got {got}.")
    X, y, *rest = result
    metadata = rest[0] if rest else {}
    try:
        X = np.array(check_finite_array(X, "X (features)", ndim=2), dtype=np.float64)
        y = np.array(check_finite_array(y, "y (labels)", ndim=1))
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels.")
        if X.shape[1] == 0:
            raise ValueError("expected at least one feature, got 0.")
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}.")
        try:
            metadata = json.loads(json.dumps(metadata, allow_nan=False, sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must hold JSON values only ({exc}).") from None
    except ValueError as exc:
        raise plugins.PluginError(
            f"{where}: {str(exc).rstrip('.')}. Expected {LOADER_PROTOCOL}."
        ) from None
    h = hashlib.sha256()
    for arr in (X, y):
        arr.flags.writeable = False  # shared by every run of the process
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    return PluginData(plugin, X, y, metadata, h.hexdigest())


def dataset_plugins() -> list[dict]:
    """The installed dataset plugins (``natgrad.problems`` entry points), for listings:
    one dict per entry point with its ``name``, ``import`` path, ``package``, ``version``
    and a ``note`` ("shadowed by a built-in" when a built-in dataset has its name).
    Nothing is imported or loaded."""
    return plugins.available(plugins.DATASET_GROUP, builtin=DATASETS)


def _parse_svmlight(buffer, label_column):
    try:
        X, y = datasets.load_svmlight_file(buffer)
    except ValueError as exc:
        raise ValueError(f"not a valid LIBSVM/svmlight file ({exc}).") from None
    except OverflowError:
        raise ValueError(
            "not a valid LIBSVM/svmlight file: a feature index does not fit in 32 bits."
        ) from None
    n_bytes = X.shape[0] * X.shape[1] * 8
    if n_bytes > MAX_DENSE_BYTES:
        raise ValueError(
            f"{X.shape[0]} samples x {X.shape[1]} features (the largest feature index) "
            f"densify to {n_bytes / 2**30:.3g} GiB of float64, above the "
            f"{MAX_DENSE_BYTES / 2**30:g} GiB limit; expected a feature index <= "
            f"{MAX_DENSE_BYTES // (8 * max(X.shape[0], 1))}."
        )
    return X.toarray(), y


def _parse_npz(buffer, label_column):
    try:
        data = np.load(buffer, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"not an NPZ archive (np.savez) ({exc}).") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(
            "expected an NPZ archive with arrays 'X' and 'y' (np.savez), got a single .npy array."
        )
    with data:
        missing = {"X", "y"} - set(data.files)
        if missing:
            raise ValueError(
                f"expected arrays 'X' and 'y', missing {sorted(missing)} "
                f"(the file holds {sorted(data.files)})."
            )
        try:
            return data["X"], data["y"]
        except (ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"cannot read arrays 'X' and 'y' ({exc}).") from None


def _parse_csv(buffer, label_column):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # empty input: checked below
            table = np.loadtxt(buffer, delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"expected a numeric table without header, comma-separated ({exc})."
        ) from None
    if table.shape[0] == 0 or table.shape[1] < 2:
        raise ValueError(
            f"expected a numeric table without header, with >= 1 row and >= 2 columns, "
            f"got shape {table.shape}."
        )
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise ValueError(
            f"label_column = {label_column} is out of range for {table.shape[1]} columns."
        )
    y = table[:, label_column]
    X = np.delete(table, label_column % table.shape[1], axis=1)
    return X, y


_PARSERS = {"svmlight": _parse_svmlight, "npz": _parse_npz, "csv": _parse_csv}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_field_type(value, key: str, kind: type) -> None:
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise TypeError(
            f"{key} must be {'an integer' if kind is int else 'a string'}, "
            f"got {type(value).__name__} ({value!r})."
        )


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
        # Hinton & Salakhutdinov's (2006) MNIST autoencoder, the K-FAC papers' benchmark,
        # scaled to digits: 64-256-128-32-128-256-64, 107,360 parameters
        Problem(
            "digits-deep-autoencoder",
            "digits",
            "autoencoder",
            alpha=1e-4,
            hidden=(256, 128, 32, 128, 256),
        ),
        # a classifier too big for the dense Fisher: 100-256-256-10, 94,218 parameters
        Problem(
            "synthetic-mlp-n20000-d100",
            "synthetic",
            "mlp",
            alpha=1e-3,
            hidden=(256, 256),
            n_samples=20_000,
            n_features=100,
            n_classes=10,
        ),
        Problem(
            "synthetic-mlp-n4000-d100",
            "synthetic",
            "mlp",
            alpha=1e-3,
            hidden=(64, 64),
            n_samples=4_000,
            n_features=100,
            n_classes=10,
        ),
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
    "scaling": [name for name in PROBLEMS if name.startswith("synthetic-n")],
    "stochastic": [
        "digits-mlp",
        "digits-autoencoder",
        "digits-deep-autoencoder",
        "synthetic-mlp-n20000-d100",
    ],
    "stochastic-quick": ["digits-mlp", "digits-autoencoder", "synthetic-mlp-n4000-d100"],
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
    return Problem(**spec)
