"""Tuned labels, the training-loss target table and the findings computed from it: hand-made
results tables and hand-computed expectations."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from natgrad_core.benchmarking import report
from natgrad_core.benchmarking.report import metrics, tables
from natgrad_core.benchmarking.runner import SolverConfig
from natgrad_core.benchmarking.tuning import Selection, TuneSpec, tuning_table
from tests.benchmarking.test_report import PROV, frame_of, make_run, row


# ----------------------------------------------------------------------------- labels
def test_a_label_tuned_per_problem_is_not_split():
    frame = frame_of(
        make_run("P", "adam (tuned)", 0, [1.0], config_id="a"),
        make_run("Q", "adam (tuned)", 0, [1.0], config_id="b"),
        make_run("P", "t", 0, [1.0], config_id="t", code_version="old"),
        make_run("Q", "t", 0, [1.0], config_id="t", code_version="new"),
    )
    out = metrics.separate_configurations(frame)
    assert set(out["solver"]) == {"adam (tuned)", "t"}


def test_several_configurations_on_one_problem_split_the_label_everywhere():
    frame = frame_of(
        make_run("P", "s", 0, [1.0], config_id="a"),
        make_run("P", "s", 1, [1.0], config_id="b"),
        make_run("Q", "s", 0, [1.0], config_id="a"),
    )
    out = metrics.separate_configurations(frame)
    assert list(out["solver"]) == ["s [cfg a]", "s [cfg b]", "s [cfg a]"]
    pd.testing.assert_frame_equal(metrics.separate_configurations(out), out)


def test_hyperparameters_say_how_each_configuration_was_chosen_and_where_it_ran():
    frame = frame_of(
        make_run("P", "adam (tuned)", 0, [1.0], config_id="a", algorithm="adam"),
        make_run("Q", "adam (tuned)", 0, [1.0], config_id="b", algorithm="adam"),
        make_run("P", "adam (default)", 0, [1.0], config_id="d", algorithm="adam"),
        make_run("Q", "adam (default)", 0, [1.0], config_id="d", algorithm="adam"),
        make_run("P", "kfac", 0, [1.0], config_id="k", algorithm="kfac"),
    )
    table = metrics.hyperparameters(frame, {})
    got = {(r.solver, r.config_id): (r.tuning, r.problems) for r in table.itertuples()}
    assert got == {
        ("adam (default)", "d"): ("default (untuned)", "P, Q"),
        ("adam (tuned)", "a"): ("tuned per problem (see the tuning table)", "P"),
        ("adam (tuned)", "b"): ("tuned per problem (see the tuning table)", "Q"),
        ("kfac", "k"): ("not tuned", "P"),
    }
    md = tables._markdown("hyperparameters", table, {})
    assert "|  | adam (default) | adam (tuned): P | adam (tuned): Q | kfac |" in md


# ----------------------------------------------------------------------------- to_target
def target_frame():
    """P (convex, F* exact): kfac with batches of 5 of 10 samples on three seeds, reaching
    the 0.05 target at iterations 2 and 1 and never; gd, full batch, at iteration 1.
    Q (non-convex): F* = 1, the lowest loss; adam reaches it, kfac does not."""
    kfac = {"algorithm": "kfac", "batch_size": 5, "n_train": 10}
    return frame_of(
        make_run("P", "kfac", 0, [1.0, 0.5, 0.04, 0.01], test_metric=0.8, **kfac),
        make_run(
            "P", "kfac", 1, [2.0, 0.09, 0.05, 0.0], [0.0, 0.5, 0.7, 0.9], test_metric=0.9, **kfac
        ),
        make_run("P", "kfac", 2, [1.0, 0.9, 0.8, 0.7], test_metric=0.7, **kfac),
        make_run("P", "gd", 0, [1.0, 0.01], [0.0, 0.25]),
        make_run("Q", "adam", 0, [np.nan] * 3, convex=False, loss=[3.0, 2.0, 1.0]),
        make_run("Q", "kfac", 0, [np.nan] * 2, convex=False, loss=[3.0, 1.5], algorithm="kfac"),
    )


def test_to_target_first_reaching_row_and_quartiles_with_inf():
    table = metrics.to_target(target_frame(), 0.05)
    kfac = row(table, problem="P", solver="kfac")
    assert (kfac["algorithm"], kfac["reference"]) == ("kfac", "exact optimum")
    assert (kfac["n_runs"], kfac["n_reached"]) == (3, 2)
    # updates [2, 1, inf]: median 2, q25 between 1 and 2, q75 between 2 and inf
    assert (kfac["updates_median"], kfac["updates_q25"], kfac["updates_q75"]) == (2, 1.5, np.inf)
    # epochs = updates * 5 / 10
    assert (kfac["epochs_median"], kfac["epochs_q25"], kfac["epochs_q75"]) == (1.0, 0.75, np.inf)
    # time at those rows: 2.0 (seed 0) and 0.5 (seed 1)
    assert (kfac["time_median"], kfac["time_q25"], kfac["time_q75"]) == (2.0, 1.25, np.inf)
    assert kfac["final_loss_median"] == 1.01  # last losses 1.01, 1.0, 1.7
    assert kfac["test_metric_median"] == 0.8
    gd = row(table, problem="P", solver="gd")
    assert (gd["updates_median"], gd["epochs_median"], gd["time_median"]) == (1, 1, 0.25)
    adam, never = row(table, problem="Q", solver="adam"), row(table, problem="Q", solver="kfac")
    assert adam["reference"] == "best known" and adam["updates_median"] == 2
    assert never["n_reached"] == 0 and never["updates_median"] == np.inf
    assert set(table["target_gap"]) == {0.05} and table.attrs["target_gap"] == 0.05


def test_to_target_is_nan_without_a_reference():
    frame = make_run("R", "gd", 0, [np.nan, np.nan, np.nan])
    (r,) = metrics.to_target(frame, 0.1).to_dict("records")
    assert r["n_reached"] == 0
    assert all(
        math.isnan(r[f"{s}_{q}"]) for s in ("updates", "epochs", "time") for q in metrics._SPREAD
    )


@pytest.mark.parametrize("gap", [0, 1, -0.1, float("nan"), "0.1"])
def test_to_target_rejects_a_gap_outside_zero_one(gap):
    with pytest.raises(ValueError, match="target_gap"):
        metrics.to_target(target_frame(), gap)


# ----------------------------------------------------------------------------- findings
def target_row(problem, solver, algorithm, updates, seconds, test, n_runs=3):
    return {
        "problem": problem,
        "solver": solver,
        "algorithm": algorithm,
        "n_runs": n_runs,
        "updates_median": updates,
        "time_median": seconds,
        "test_metric_median": test,
    }


def findings_table():
    rows = [
        # NG wins; the untuned default is faster but a tuned baseline exists
        target_row("digits-autoencoder", "kfac", "kfac", 120, 2.3, 0.21),
        target_row("digits-autoencoder", "exact", "exact", 200, 1.0, 0.2),
        target_row("digits-autoencoder", "adam (tuned)", "adam", 372, 4.1, 0.24),
        target_row("digits-autoencoder", "adam (default)", "adam", 100, 1.0, 0.3),
        target_row("digits-autoencoder", "gd (tuned)", "gd", 400, 3.0, 0.3),
        # NG loses; ties in updates go to the lower time
        target_row("iris-mlp", "cg", "cg", 300, 7.0, 0.9),
        target_row("iris-mlp", "kfac", "kfac", 300, 6.0, 0.91),
        target_row("iris-mlp", "momentum (tuned)", "momentum", 100, 2.0, 0.95),
        # no tuned baseline; NG never reaches the target
        target_row("wine-mlp", "kfac", "kfac", np.inf, np.inf, 0.5),
        target_row("wine-mlp", "gd", "gd", 50, 0.5, 0.6),
        # no baseline at all: left out
        target_row("lonely", "kfac", "kfac", 1, 1.0, 0.5),
    ]
    return pd.DataFrame(rows)


def test_findings_statements_carry_the_table_numbers():
    table = findings_table()
    *per_problem, _ = metrics.findings(table, 0.05)
    got = {f["problem"]: f for f in per_problem}
    assert list(got) == ["digits-autoencoder", "iris-mlp", "wine-mlp"]

    win = got["digits-autoencoder"]
    assert win["statement"] == (
        "On digits-autoencoder, kfac reaches the training-loss target (gap ≤ 0.05) in 3.1× "
        "fewer updates and 1.8× less time than tuned adam (median over 3 seeds: 120 vs 372 "
        "updates, 2.3 s vs 4.1 s); test MSE at the budget 0.21 vs 0.24."
    )
    assert (win["natural_gradient"], win["baseline"]) == ("kfac", "adam (tuned)")
    assert win["updates"] == {"natural_gradient": 120, "baseline": 372}
    assert win["seconds"] == {"natural_gradient": 2.3, "baseline": 4.1}
    assert win["updates_ratio"] == 372 / 120 and win["time_ratio"] == 4.1 / 2.3
    assert win["ng_fewer_updates"] and win["ng_less_time"] and win["baseline_tuned"]
    assert win["test_metric"] == {"natural_gradient": 0.21, "baseline": 0.24}
    # every number in the sentence is one of the table's (or a ratio of two)
    numbers = {float(x) for x in re.findall(r"\d+(?:\.\d+)?", win["statement"])}
    assert {120.0, 372.0, 2.3, 4.1, 0.21, 0.24, 0.05, 3.0} <= numbers
    assert round(372 / 120, 1) in numbers and round(4.1 / 2.3, 1) in numbers


def test_findings_say_plainly_when_natural_gradient_loses():
    *per_problem, summary = metrics.findings(findings_table(), 0.05)
    got = {f["problem"]: f for f in per_problem}
    lose = got["iris-mlp"]
    assert lose["natural_gradient"] == "kfac"  # 300 updates like cg, in less time
    assert lose["statement"] == (
        "On iris-mlp, kfac reaches the training-loss target (gap ≤ 0.05) in 3.0× more "
        "updates and 3.0× more time than tuned momentum (median over 3 seeds: 300 vs 100 "
        "updates, 6 s vs 2 s); test accuracy at the budget 0.91 vs 0.95."
    )
    assert not lose["ng_fewer_updates"] and not lose["ng_less_time"]
    assert lose["updates_ratio"] == 100 / 300

    never = got["wine-mlp"]
    assert never["statement"] == (
        "On wine-mlp, kfac does not reach the training-loss target (gap ≤ 0.05); untuned gd "
        "does, in 50 updates and 0.5 s (median over 3 seeds); test accuracy at the budget "
        "0.5 vs 0.6."
    )
    assert not never["baseline_tuned"] and never["updates_ratio"] == 0.0

    assert summary == {
        "problem": "all",
        "n_problems": 3,
        "ng_fewer_updates": 1,
        "ng_less_time": 1,
        "untuned_baselines": 1,
        "statement": (
            "The best natural-gradient solver reaches the training-loss target (gap ≤ 0.05) "
            "in fewer median updates than the best tuned baseline on 1 of 3 problems and in "
            "less median time on 1 of 3 (on 1, no baseline was tuned: the untuned one is "
            "compared)."
        ),
    }


def test_findings_when_only_natural_gradient_or_neither_reaches():
    table = pd.DataFrame(
        [
            target_row("a", "kfac", "kfac", 10, 0.1, np.nan, n_runs=1),
            target_row("a", "adam (tuned)", "adam", np.inf, np.inf, np.nan, n_runs=1),
            target_row("b", "kfac", "kfac", np.inf, np.inf, np.nan),
            target_row("b", "adam (tuned)", "adam", np.inf, np.inf, np.nan),
        ]
    )
    only, neither, summary = metrics.findings(table, 0.1)
    assert only["statement"] == (
        "On a, kfac reaches the training-loss target (gap ≤ 0.1) in 10 updates and 0.1 s; "
        "tuned adam does not reach it (median over 1 seed)."
    )
    assert only["ng_fewer_updates"] and only["updates_ratio"] == np.inf
    assert neither["statement"] == (
        "On b, neither kfac nor tuned adam reaches the training-loss target (gap ≤ 0.1) "
        "(median over 3 seeds)."
    )
    assert math.isnan(neither["updates_ratio"]) and not neither["ng_fewer_updates"]
    assert (summary["ng_fewer_updates"], summary["ng_less_time"]) == (1, 1)


def test_findings_from_a_results_table():
    frame = frame_of(
        make_run("P", "kfac", 0, [1.0, 0.5, 0.01], algorithm="kfac"),
        make_run("P", "gd (tuned)", 0, [1.0, 0.5, 0.1, 0.01], [0.0, 0.1, 0.2, 0.3]),
    )
    finding, _ = metrics.findings(metrics.to_target(frame, 0.05), 0.05)
    assert finding["updates"] == {"natural_gradient": 2, "baseline": 3}
    assert finding["seconds"] == {"natural_gradient": 2.0, "baseline": 0.3}
    assert "1.5× fewer updates and 6.7× more time than tuned gd" in finding["statement"]


# ----------------------------------------------------------------------------- files, page
def tuning_for(problems):
    spec = TuneSpec((9, 10), (("gd", (("learning_rate", (0.1, 1.0)),)),))
    chosen = SolverConfig.make("gd", "gd", learning_rate=1.0)
    return tuning_table(
        spec,
        [Selection(p, "gd", chosen, {"learning_rate": 1.0}, 0.25, 2, 4, 1.5, 1) for p in problems],
    )


def report_frame():
    return frame_of(
        make_run("P", "kfac", 0, [1.0, 0.5, 0.01], algorithm="kfac"),
        make_run("P", "gd (tuned)", 0, [1.0, 0.5, 0.1, 0.01], config_id="g1"),
        make_run("P", "gd (default)", 0, [1.0, 0.9, 0.8, 0.7], config_id="g0"),
        make_run("Q", "kfac", 0, [1.0, 0.01], algorithm="kfac"),
        make_run("Q", "gd (tuned)", 0, [1.0, 0.5, 0.01], config_id="g2"),
        make_run("Q", "gd (default)", 0, [1.0, 0.9, 0.8, 0.7], config_id="g0"),
    )


def test_to_target_and_tuning_tables_in_four_formats(tmp_path):
    written = {
        "to_target": metrics.to_target(target_frame(), 0.05),
        "tuning": tuning_for(["P", "Q"]),
    }
    paths = report.write_tables(written, tmp_path, PROV)
    assert len(paths) == 8
    for name, table in written.items():
        back = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(back.columns) == [tables.COLUMN_LABELS.get(c, c) for c in table.columns]
        sidecar = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        assert sidecar["title"] == tables.TABLE_TITLES[name] and sidecar["note"]
        for column, doc in sidecar["columns"].items():
            assert doc["description"] != column, column  # documented, not just named
    docs = json.loads((tmp_path / "to_target.json").read_text())["columns"]
    assert docs["time_median"]["unit"] == "seconds" and docs["epochs_q25"]["unit"] == "epochs"
    assert json.loads((tmp_path / "tuning.json").read_text())["columns"]["seconds"]["unit"] == (
        "seconds"
    )

    md = (tmp_path / "to_target.md").read_text(encoding="utf-8")
    assert "| problem | solver | reached | updates | epochs | seconds | final loss |" in md
    assert "| P | kfac | 2/3 | 2.00 [1.50, ∞] | 1.00 [0.75, ∞] | 2.0 [1.2, ∞] |" in md
    assert "| Q† | kfac | 0/1 | — | — | — |" in md
    assert "loss − F* ≤ 0.05 · (L0 − F*)" in md
    tuning = (tmp_path / "tuning.md").read_text(encoding="utf-8")
    assert "learning_rate = 0.1, 1" in tuning and '{"' not in tuning
    tex = (tmp_path / "tuning.tex").read_text(encoding="utf-8")
    assert r"learning\_rate = 0.1, 1" in tex and r"\{" not in tex


def test_full_batch_target_table_leaves_out_epochs():
    table = metrics.to_target(report_frame(), 0.05)
    md = tables._markdown("to_target", table, {})
    assert "| problem | solver | reached | updates | seconds |" in md
    assert "Epochs = updates in every row (full batch)" in md


def test_build_report_with_tuning_and_target(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "make_figures", lambda *args, **kwargs: [])
    frame = report_frame()
    index = report.build_report(frame, tmp_path, tuning=tuning_for(["P", "Q"]), target_gap=0.05)
    folder = tmp_path / "tables"
    for name in ("to_target", "tuning"):
        for ext in ("csv", "json", "md", "tex"):
            assert (folder / f"{name}.{ext}").is_file()

    def strict(text):
        raise ValueError(f"not strict JSON: {text}")

    found = json.loads((folder / "findings.json").read_text(), parse_constant=strict)
    assert found["provenance"]["n_runs"] == 6
    expected = metrics.findings(metrics.to_target(frame, 0.05), 0.05)
    assert [f["statement"] for f in found["findings"]] == [f["statement"] for f in expected]
    assert found["findings"][0]["updates"] == {"natural_gradient": 2.0, "baseline": 3.0}
    md = (folder / "findings.md").read_text(encoding="utf-8")
    assert all(f"- {f['statement']}" in md for f in expected)
    manifest = json.loads((tmp_path / "natgrad-manifest.json").read_text())["files"]
    assert {"tables/findings.json", "tables/findings.md", "tables/to_target.csv"} <= set(manifest)

    text = index.read_text(encoding="utf-8")
    order = [text.index(f'id="{a}"') for a in ("findings", "headline", "to-target", "tuning")]
    assert order == sorted(order)
    assert text.index('id="to-target"') < text.index('id="how-to-read"')
    findings_section = text[order[0] : order[1]]
    assert "On P, kfac reaches the training-loss target (gap ≤ 0.05) in 1.5× fewer" in (
        findings_section
    )
    assert "on 2 of 2 problems" in findings_section
    tuning_section = text[order[3] : text.index('id="problems"')]
    assert "cost 8 runs of 4 candidates on tuning seeds 9, 10" in tuning_section
    assert "3 optimizer seconds in all; 2 of the runs failed" in tuning_section
    assert "learning_rate = 1" in tuning_section


def test_build_report_without_tuning_or_target_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "make_figures", lambda *args, **kwargs: [])
    report.build_report(report_frame(), tmp_path / "a")
    report.build_report(report_frame(), tmp_path / "b", tuning=tuning_for(["P"]), target_gap=0.5)
    plain = {p.name for p in (tmp_path / "a" / "tables").iterdir()}
    assert not {"findings.json", "findings.md", "to_target.csv", "tuning.csv"} & plain
    text = (tmp_path / "a" / "index.html").read_text(encoding="utf-8")
    assert 'id="findings"' not in text and 'id="tuning"' not in text
    assert 'id="to-target"' not in text
    # the tables both reports write are the same bytes but for the provenance they share
    for name in ("headline_time.csv", "time_to_eps.csv", "step_diagnostics.csv"):
        a = (tmp_path / "a" / "tables" / name).read_bytes()
        assert a == (tmp_path / "b" / "tables" / name).read_bytes()


def test_new_tables_latex_structure_with_hostile_labels(tmp_path):
    from tests.benchmarking.test_tables import HOSTILE, check_latex_structure

    frame = frame_of(
        target_frame(), make_run("P", HOSTILE + " (tuned)", 0, [1.0, 0.01], config_id="h")
    )
    tuning = tuning_for(["P", "Q"])
    tuning.loc[0, "selected"] = json.dumps({"learning_rate": 0.5, "step": "armijo_%"})
    written = {"to_target": metrics.to_target(frame, 0.05), "tuning": tuning}
    report.write_tables(written, tmp_path, PROV)
    for name in written:
        tex = (tmp_path / f"{name}.tex").read_text(encoding="utf-8")
        assert check_latex_structure(tex) >= 1, name
    tex = (tmp_path / "to_target.tex").read_text(encoding="utf-8")
    assert r"a\_b\&c\%\#\$ (tuned)" in tex and r"Q$^\dagger$" in tex
    assert check_latex_structure(tex) == 2  # 6 value columns > MAX_LATEX_COLUMNS = 5
    assert r"step = armijo\_\%" in (tmp_path / "tuning.tex").read_text(encoding="utf-8")


def test_tuning_table_read_back_from_the_cli_file_renders(tmp_path):
    path = tmp_path / "selection.json"
    path.write_text(tuning_for(["P"]).to_json(orient="records"), encoding="utf-8")
    back = pd.read_json(path, orient="records")  # as natgrad report reads it
    md = tables._markdown("tuning", back, {})
    assert "learning_rate = 1" in md and "learning_rate = 0.1, 1" in md
    assert tables._json_text({"lr": [0.1, 1.0]}) == "lr = 0.1, 1"
    assert tables._json_text("not json") == "not json"


def test_a_run_without_a_reference_at_its_start_is_nan_not_measured_from_a_later_row():
    # suboptimality NaN at iteration 0: L0 - F* unknown, even though later rows have one
    frame = make_run("R", "gd", 0, [np.nan, 1.0, 0.01])
    (r,) = metrics.to_target(frame, 0.05).to_dict("records")
    assert math.isnan(r["updates_median"]) and r["n_reached"] == 0
