"""Registered studies: the claims people cite about natural gradient, reproduced.

A study is a function ``run(quick: bool, seed: int) -> StudyResult`` registered under a
name with :func:`register`. It computes its numbers with the library (models, curvature,
step rules, minimize), returns one table, one figure and its findings — each a statement
with the measured numbers and whether it held in these data — and :func:`write_study`
writes them, with the provenance, to ``results/studies/<name>/``::

    <name>.png, <name>.pdf      the figure (200 dpi PNG, vector PDF)
    <name>.csv/.json/.md/.tex   the table (the report's four formats; the JSON sidecar
                                holds column descriptions and the provenance)
    findings.json               the findings, the settings and the provenance
    provenance.json             the environment that ran it, with date and host

``natgrad study NAME`` runs one (``--quick``: the reduced size its test runs, seconds),
``natgrad study --list`` lists them. A claim that does not hold in our data is reported
as not holding, with the numbers: that is a result too. Every random choice follows
``seed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..._threads import limit_threads
from ..report.tables import json_safe

__all__ = [
    "STUDIES",
    "Finding",
    "Study",
    "StudyResult",
    "cosine",
    "register",
    "run_study",
    "write_study",
]


@dataclass(frozen=True)
class Finding:
    """One claim checked on the data: the sentence, the numbers it rests on, and whether
    it held. ``statement`` is computed from ``numbers``, never hand-written."""

    claim: str
    statement: str
    numbers: dict
    held: bool


@dataclass
class StudyResult:
    """What a study run produced: ``table`` (its numbers, long format), ``figure`` (a
    matplotlib Figure), ``findings``, and ``settings`` (sizes, grids, seeds: what ran)."""

    table: pd.DataFrame
    figure: object
    findings: list[Finding]
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A registered study: its ``name`` (the folder and the command's argument), a
    ``title``, the ``source`` it reproduces (paper and section), its ``columns``
    (table column -> (description, unit)) and the function that runs it."""

    name: str
    title: str
    source: str
    columns: dict
    run: Callable[[bool, int], StudyResult]


STUDIES: dict[str, Study] = {}
"""Study name -> :class:`Study`, in registration order (``natgrad study --list``)."""


def register(name: str, title: str, source: str, columns: dict):
    """Decorator registering ``run(quick, seed) -> StudyResult`` as the study ``name``."""

    def wrap(run):
        if name in STUDIES:
            raise ValueError(f"a study named {name!r} is already registered.")
        STUDIES[name] = Study(name, title, source, columns, run)
        return run

    return wrap


def _load_all() -> None:
    """Import the study modules (each registers itself)."""
    from . import _registry  # noqa: F401


def get_study(name: str) -> Study:
    _load_all()
    if name not in STUDIES:
        raise ValueError(f"Unknown study {name!r}; expected one of {list(STUDIES)}.")
    return STUDIES[name]


def run_study(name: str, quick: bool = False, seed: int = 0, blas_threads: int = 1):
    """Run the study ``name`` with BLAS pinned to ``blas_threads``: (StudyResult, record),
    the record being :func:`provenance.provenance` of its settings."""
    from ..provenance import provenance

    study = get_study(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
    with limit_threads(blas_threads):
        result = study.run(quick, seed)
        record = provenance({"study": name, "quick": quick, "seed": seed, **result.settings})
    return result, record


def cosine(a, b) -> float:
    """cos ∠(a, b), for the studies that compare directions."""
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def write_study(name: str, result: StudyResult, record: dict, out) -> list[Path]:
    """Write ``result`` of study ``name`` under ``out`` (see module doc); the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..provenance import table_provenance
    from ..report.tables import write_tables
    from ..store import write_if_changed

    study = get_study(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stable = {k: v for k, v in record.items() if k not in ("date", "host")}
    table = result.table.copy()
    table.attrs = {"title": study.title, "columns": study.columns, "notes": [study.source]}
    paths = write_tables({name: table}, out, table_provenance(stable))
    figure = [out / f"{name}.png", out / f"{name}.pdf"]
    result.figure.savefig(figure[0], dpi=200, metadata={"Software": None})
    result.figure.savefig(figure[1], metadata={"CreationDate": None})
    plt.close(result.figure)
    findings = {
        "study": name,
        "title": study.title,
        "source": study.source,
        "settings": json_safe(result.settings),
        "findings": [json_safe(asdict(f)) for f in result.findings],
        "provenance": json_safe(stable),
    }
    text = json.dumps(findings, indent=1, sort_keys=True, default=str) + "\n"
    write_if_changed(out / "findings.json", text.encode("utf-8"))
    volatile = json.dumps(json_safe(record), indent=1, sort_keys=True, default=str) + "\n"
    write_if_changed(out / "provenance.json", volatile.encode("utf-8"))
    return [*paths, *figure, out / "findings.json", out / "provenance.json"]
