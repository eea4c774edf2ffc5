"""The study framework: registration, the files a study writes, the command."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking import studies
from natgrad_core.benchmarking.cli import main


@pytest.fixture
def toy(monkeypatch):
    """A registered toy study whose one finding holds iff its mean is positive."""
    # register the real studies first: otherwise they would register into the patched
    # copy and be lost to every later test
    studies._load_all()
    monkeypatch.setattr(studies, "STUDIES", dict(studies.STUDIES))

    @studies.register("toy", "A toy", "nobody (2026)", {"x": ("a draw", "")})
    def run(quick, seed):
        x = np.random.default_rng(seed).normal(1.0, 0.1, 5 if quick else 50)
        fig, ax = plt.subplots()
        ax.plot(x)
        mean = float(x.mean())
        finding = studies.Finding(
            "the mean is positive", f"mean {mean:.3g}", {"mean": mean}, mean > 0
        )
        return studies.StudyResult(pd.DataFrame({"x": x}), fig, [finding], {"n": len(x)})

    return run


def test_a_study_writes_its_figure_table_findings_and_provenance(toy, tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["study", "toy", "--quick", "--out", str(out), "--seed", "3"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"toy.png", "toy.pdf", "toy.csv", "toy.json", "toy.md", "toy.tex"} <= names
    assert {"findings.json", "provenance.json"} <= names
    found = json.loads((out / "findings.json").read_text())
    expected = np.random.default_rng(3).normal(1.0, 0.1, 5)
    np.testing.assert_allclose(pd.read_csv(out / "toy.csv")["x"], expected, rtol=1e-15)
    (finding,) = found["findings"]
    assert finding["held"] is True
    assert finding["numbers"]["mean"] == pytest.approx(expected.mean(), rel=1e-15)
    assert found["settings"] == {"n": 5}
    assert "date" not in found["provenance"] and "date" in json.loads(
        (out / "provenance.json").read_text()
    )
    assert "[held] mean" in capsys.readouterr().out


def test_the_same_seed_writes_the_same_numbers(toy, tmp_path):
    for folder in ("a", "b"):
        assert main(["study", "toy", "--quick", "--out", str(tmp_path / folder)]) == 0
    assert (tmp_path / "a" / "toy.csv").read_bytes() == (tmp_path / "b" / "toy.csv").read_bytes()


def test_list_and_bad_input(toy, capsys):
    assert main(["study", "--list"]) == 0
    assert "toy" in capsys.readouterr().out
    assert main(["study", "nope"]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert main(["study", "toy", "--seed", "-1"]) == 2
    with pytest.raises(ValueError, match="already registered"):
        studies.register("toy", "again", "", {})(toy)


def test_the_html_report_lists_the_studies_found_beside_it(toy, tmp_path):
    from natgrad_core.benchmarking.report import _studies
    from natgrad_core.benchmarking.report.html import write_html

    assert main(["study", "toy", "--quick", "--out", str(tmp_path / "studies" / "toy")]) == 0
    found = _studies(tmp_path)
    assert [s["study"] for s in found] == ["toy"]
    index = write_html(tmp_path, {}, [], {}, found)
    page = index.read_text()
    statement = found[0]["findings"][0]["statement"]
    assert "Studies" in page and f"<strong>held:</strong> {statement}" in page
    assert 'href="studies/toy/toy.md"' in page


def test_the_readme_states_every_committed_study_and_its_findings():
    root = Path(__file__).resolve().parents[3]
    readme = (root / "README.md").read_text(encoding="utf-8")
    studies._load_all()
    committed = sorted((root / "results" / "studies").glob("*/findings.json"))
    assert {p.parent.name for p in committed} == set(studies.STUDIES)
    for path in committed:
        found = json.loads(path.read_text(encoding="utf-8"))
        assert f"**`{found['study']}`**" in readme
        for finding in found["findings"]:
            assert finding["statement"] in readme, (found["study"], finding["claim"])
            mark = "held" if finding["held"] else "did not hold"
            assert f"{mark} ({finding['claim']}): {finding['statement']}" in readme
