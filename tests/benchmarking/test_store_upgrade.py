"""Run files of an older schema are read through ``store.UPGRADES``.

``tests/data/schema2`` holds one run written by natgrad before schema 3 renamed the
algorithm column ``solver_name`` to ``algorithm`` (iris-logistic, gd with Armijo steps,
3 iterations). It is read here as results committed by that version would be.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from natgrad_core.benchmarking.store import SCHEMA, SCHEMA_VERSION, ResultsStore

SCHEMA2 = Path(__file__).resolve().parents[1] / "data" / "schema2"


def test_schema2_file_loads_with_the_algorithm_column(tmp_path):
    root = shutil.copytree(SCHEMA2, tmp_path / "results")
    (csv,) = sorted((root / "runs").glob("*.csv"))
    raw = pd.read_csv(csv, dtype=str)  # the file as written, read without natgrad
    assert set(raw["schema_version"]) == {"2"} and "algorithm" not in raw

    frame = ResultsStore(root).load()

    assert list(frame.columns) == list(SCHEMA)
    assert "solver_name" not in frame.columns
    assert (frame["schema_version"] == SCHEMA_VERSION).all()
    assert frame["algorithm"].tolist() == raw["solver_name"].tolist() == ["gd"] * len(raw)
    assert frame["solver"].tolist() == raw["solver"].tolist() == ["gd-armijo"] * len(raw)
    assert frame["iteration"].tolist() == raw["iteration"].astype(int).tolist()


def test_schema2_file_counts_as_stored_and_is_not_quarantined(tmp_path):
    root = shutil.copytree(SCHEMA2, tmp_path / "results")
    before = sorted(p.name for p in (root / "runs").iterdir())

    statuses = ResultsStore(root).statuses()

    assert statuses == {Path(before[0]).stem: "max_iter"}
    assert sorted(p.name for p in (root / "runs").iterdir()) == before
