"""Where numbers came from: package and dependency versions, commit, BLAS, CPU, date."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from threadpoolctl import threadpool_info

__all__ = ["code_version", "config_hash", "machine_id", "provenance"]

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


@lru_cache(maxsize=1)
def code_version() -> str:
    """First 12 hex digits of a SHA-256 over the sources that produce the numbers."""
    h = hashlib.sha256()
    paths = []
    for name in _NUMERIC_SOURCES:
        target = _PACKAGE_DIR / name
        paths.extend(target.rglob("*.py") if target.is_dir() else [target])
    for path in sorted(paths):
        h.update(path.relative_to(_PACKAGE_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def config_hash(config) -> str:
    """SHA-256 (12 hex digits) of a JSON-serializable configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _git(*args):
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=_PACKAGE_DIR, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def machine_id() -> str:
    """First 12 hex digits of a SHA-256 over CPU model, logical cores, platform and host
    name: two runs with the same id ran on the same machine, so their times compare."""
    facts = [_cpu_model(), str(os.cpu_count()), platform.platform(), platform.node()]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:12]


def provenance(config=None) -> dict:
    """A JSON-serializable record stamped on every table, figure and report."""
    versions = {}
    for dist in _DEPENDENCIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        natgrad_version = metadata.version("natgrad")
    except metadata.PackageNotFoundError:
        natgrad_version = None
    # dirty = the code differs from the commit; the results being written are not code
    status = _git(
        "status",
        "--porcelain",
        "--",
        str(_PACKAGE_DIR),
        str(_PACKAGE_DIR.parent / "pyproject.toml"),
    )
    return {
        "natgrad": natgrad_version,
        "code_version": code_version(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": sys.version.split()[0],
        "dependencies": versions,
        "blas": [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpool_info()
        ],
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config_hash": None if config is None else config_hash(config),
    }
