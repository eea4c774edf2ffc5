"""Where numbers came from: code version, git state, machine, BLAS, dependency versions.

Two kinds of facts, kept apart so that regenerating results rewrites as little as
possible:

* stable facts (:func:`environment`): the code version, git commit and dirty flag, the
  machine (CPU model, logical cores, platform), the BLAS/OpenMP libraries with the threads
  in force, and the Python and dependency versions. The runner stores them with every run
  (``runs/<run_key>.json``); they change only when the code or the machine does.
* volatile facts (:func:`provenance`): the date and the host name. They live in one file
  of the report (``tables/provenance.json``) and nowhere else.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import platform
import subprocess
import time
import tokenize
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from threadpoolctl import threadpool_info

__all__ = [
    "UNKNOWN",
    "blas_in_force",
    "blas_libraries",
    "code_version",
    "config_hash",
    "environment",
    "git_state",
    "machine",
    "machine_id",
    "numerics_fingerprint",
    "provenance",
    "source_fingerprint",
    "table_provenance",
]

UNKNOWN = "unknown"
"""Recorded for a fact that cannot be established (no git, no checkout found, ...)."""

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_DEPENDENCIES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "threadpoolctl",
    "seaborn",
    "matplotlib",
    "joblib",
    "dask",
    "distributed",
)
_BLAS_FIELDS = ("user_api", "internal_api", "prefix", "version", "threading_layer", "architecture")


# The sources that determine a run's numbers; report, CLI and store changes do not
# invalidate stored runs.
_NUMERIC_SOURCES = (
    "models",
    "curvature",
    "optim",
    "_validation.py",
    "_typing.py",
    "benchmarking/problems.py",
    "benchmarking/reference.py",
    "benchmarking/runner.py",
)


def source_fingerprint(source: str) -> str:
    """The code of a Python source without its comments, docstrings and blank lines.

    Removed: every comment (``tokenize`` COMMENT tokens) and every statement that is a
    bare string literal (module, class and function docstrings, attribute docstrings:
    they do nothing when run). Then trailing whitespace and empty lines are dropped. What
    remains is the original text, so the result does not depend on the Python version's
    AST or token layout (only on it parsing the source); any edit to code changes it.
    """
    lines = source.splitlines()

    def chars(row, col):  # ast columns count UTF-8 bytes, the lines count characters
        return len(lines[row - 1].encode("utf-8")[:col].decode("utf-8"))

    cuts: list[tuple[int, int, int, int]] = []  # (row0, col0, row1, col1), 1-based rows
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            cuts.append(
                (
                    node.lineno,
                    chars(node.lineno, node.col_offset),
                    node.end_lineno,
                    chars(node.end_lineno, node.end_col_offset),
                )
            )
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            cuts.append((*tok.start, *tok.end))
    for row0, col0, row1, col1 in sorted(cuts, reverse=True):
        head, tail = lines[row0 - 1][:col0], lines[row1 - 1][col1:]
        lines[row0 - 1 : row1] = [head + tail]
    return "\n".join(line.rstrip() for line in lines if line.strip()) + "\n"


@lru_cache(maxsize=1)
def code_version() -> str:
    """First 12 hex digits of a SHA-256 over the code that produces the numbers.

    Hashes :func:`source_fingerprint` of every file of the numerical sources (models,
    curvature, optim, problems, reference, runner), so editing a comment or a docstring
    keeps the version and editing code changes it.
    """
    h = hashlib.sha256()
    paths = []
    for name in _NUMERIC_SOURCES:
        target = _PACKAGE_DIR / name
        paths.extend(target.rglob("*.py") if target.is_dir() else [target])
    for path in sorted(paths):
        h.update(path.relative_to(_PACKAGE_DIR).as_posix().encode())
        h.update(source_fingerprint(path.read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:12]


def config_hash(config) -> str:
    """SHA-256 (12 hex digits) of a JSON-serializable configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _git(cwd, *args) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=cwd, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _checkout_candidates() -> list[Path]:
    """Folders that may be the git checkout the running package came from.

    The package's own folder (an editable install, or a copy installed inside a
    checkout, e.g. asv's environments under ``.asv/``) and the source folder that pip
    recorded in ``direct_url.json`` (PEP 610) for a local install.
    """
    candidates = [_PACKAGE_DIR]
    try:
        url = json.loads(metadata.distribution("natgrad").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        url = {}
    if str(url.get("url", "")).startswith("file://"):
        candidates.append(Path(url["url"][len("file://") :]))
    return candidates


def _blob_id(data: bytes) -> str:
    """The id git gives a file's content (SHA-1 of ``blob <size>\\0<content>``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@lru_cache(maxsize=1)
def git_state() -> dict:
    """``{"git_commit": HEAD, "git_dirty": bool}`` of the code that is running.

    The running package is compared file by file (git blob ids) with the package folder
    in the commit HEAD of the checkout it came from (see :func:`_checkout_candidates`):
    ``git_dirty`` is True when any file differs, is missing or is extra. This holds for an
    editable install and for a copy installed elsewhere alike; asking ``git status``
    about the installed folder instead answers "clean" for a copy under an ignored folder
    (``.venv/``, ``.asv/``) whatever the checkout holds. Both facts are
    :data:`UNKNOWN` when no checkout with this package is found or git is unavailable.
    """
    name = _PACKAGE_DIR.name
    for folder in _checkout_candidates():
        if not folder.is_dir():
            continue
        top = _git(folder, "rev-parse", "--show-toplevel")
        commit = top and _git(top, "rev-parse", "HEAD")
        listing = commit and _git(top, "ls-tree", "-r", "HEAD", "--", name)
        if not listing:
            continue
        committed = {}
        for line in listing.splitlines():
            meta, path = line.split("\t", 1)
            committed[Path(path).relative_to(name).as_posix()] = meta.split()[2]
        installed = {
            p.relative_to(_PACKAGE_DIR).as_posix(): _blob_id(p.read_bytes())
            for p in _PACKAGE_DIR.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }
        return {"git_commit": commit, "git_dirty": installed != committed}
    return {"git_commit": UNKNOWN, "git_dirty": UNKNOWN}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


@lru_cache(maxsize=1)
def machine() -> dict:
    """CPU model, logical cores, platform (OS, kernel, architecture) and the SIMD
    extensions numpy dispatches to (:func:`numpy_simd`); no host name."""
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count() or UNKNOWN,
        "platform": platform.platform(),
        "numpy_simd": numpy_simd(),
    }


def numpy_simd() -> list[str] | str:
    """The SIMD extensions of this CPU that numpy's compiled loops dispatch to (as
    ``numpy.show_runtime()`` lists them under "found"), or "unknown".

    They decide the rounding of numpy's own kernels (tanh, exp, log, sums): one "AMD
    EPYC" host with AVX-512 and one without run the same numpy, scipy and OpenBLAS
    kernels and still differ in the last bits, which a non-convex run amplifies (measured:
    a committed iris-mlp EKFAC run's gradient norm off by 8e-7 relative after 75 steps).
    """
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2 names the module numpy.core
        try:
            from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        except ImportError:
            return UNKNOWN
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def blas_in_force() -> list[dict]:
    """Every BLAS/OpenMP pool loaded now, with the threads it would use, in a stable order.

    Call it inside the run's ``threadpool_limits`` context to record the threads in force
    during the run. The library is named by its file name (not its path), and the list is
    sorted, since ``threadpool_info`` lists pools in the order they were loaded.
    """
    pools = []
    for info in threadpool_info():
        pool = {k: info.get(k) for k in _BLAS_FIELDS}
        pool["library"] = Path(info.get("filepath") or "").name
        pool["num_threads"] = info.get("num_threads")
        pools.append(pool)
    return sorted(pools, key=lambda p: json.dumps(p, sort_keys=True, default=str))


def blas_libraries(pools: list[dict] | None = None) -> list[dict]:
    """The BLAS pools of ``pools`` (default: :func:`blas_in_force`), without OpenMP's: the
    libraries whose kernels decide the rounding."""
    pools = blas_in_force() if pools is None else pools
    return [p for p in pools if p.get("user_api") == "blas"]


@lru_cache(maxsize=1)
def machine_id() -> str:
    """First 12 hex digits of a SHA-256 over :func:`machine`, the host name and the BLAS
    kernels loaded (the same "AMD EPYC" runs OpenBLAS's Haswell or SkylakeX kernels, which
    round differently): two runs with the same id ran on the same machine with the same
    numerics, so their times compare."""
    kernels = sorted({f"{p['internal_api']}:{p.get('architecture')}" for p in blas_in_force()})
    facts = [json.dumps(machine(), sort_keys=True), platform.node(), *kernels]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:12]


def numerics_fingerprint(record: dict | None = None) -> str:
    """12 hex digits naming what decides the rounding of every computation: each BLAS
    library with its version and kernel, and the numpy and scipy versions.

    Same code, same seed and same fingerprint give bit-identical numbers. Across
    fingerprints they do not: the same "AMD EPYC" model runs OpenBLAS's Haswell kernels on
    one host and its SkylakeX kernels on another, and iterative solvers (CG, L-BFGS, damped
    steps) amplify the last-bit differences into other iteration counts (measured: 1801 vs
    1893 CG iterations over one 100-step run); and numpy's own kernels follow the CPU's
    SIMD extensions (:func:`numpy_simd`, part of the fingerprint where the record has
    it). ``record`` is a run record or
    :func:`environment` (default: this process, after loading numpy's and scipy's BLAS).
    """
    if record is None:
        import scipy.linalg  # noqa: F401  (scipy's own BLAS must be loaded to be named)

        record = {"blas": blas_in_force(), "dependencies": _versions(), "machine": machine()}
    kernels = sorted(
        f"{p.get('internal_api')}:{p.get('version')}:{p.get('architecture')}"
        for p in blas_libraries(record.get("blas", []))
    )
    deps = record.get("dependencies", {})
    facts = [*kernels, f"numpy:{deps.get('numpy')}", f"scipy:{deps.get('scipy')}"]
    simd = record.get("machine", {}).get("numpy_simd")
    if simd is not None:  # records written before it was recorded: unknown, left out
        facts.append(f"simd:{simd}")
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:12]


def _versions() -> dict:
    versions = {}
    for dist in ("natgrad", *_DEPENDENCIES):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def environment() -> dict:
    """The stable facts behind a number (JSON-serializable; no date, no host name)."""
    versions = _versions()
    return {
        "natgrad": versions.pop("natgrad"),
        "code_version": code_version(),
        **git_state(),
        "machine": machine(),
        "blas": blas_in_force(),
        "python": platform.python_version(),
        "dependencies": versions,
    }


def provenance(config=None) -> dict:
    """The environment making a report, with the volatile facts: date and host name.

    :func:`environment` plus ``date`` (UTC), ``host`` and ``config_hash`` (of ``config``,
    e.g. the grid configuration, or None).
    """
    return {
        **environment(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node() or UNKNOWN,
        "config_hash": None if config is None else config_hash(config),
    }


def table_provenance(record: dict) -> dict:
    """One measurement's :func:`provenance` ``record`` shaped like the report's summary,
    which lists every distinct passport (here: one) under ``code_versions``, ``git``,
    ``machines``, ``blas``, ``python`` and ``dependencies``; the other facts as they are.
    For tables written outside the report (``natgrad peers``, ``natgrad scaling``)."""
    summary = {
        "code_versions": [record["code_version"]],
        "git": [{"commit": record["git_commit"], "dirty": record["git_dirty"]}],
        "machines": [record["machine"]],
        "blas": [record["blas"]],
        "python": [record["python"]],
        "dependencies": [record["dependencies"]],
    }
    summarized = {*summary, "code_version", "git_commit", "git_dirty", "machine", "python"}
    return summary | {k: v for k, v in record.items() if k not in summarized}
