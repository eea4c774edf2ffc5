"""String columns survive the CSV round trip even when they look like numbers."""

import pandas as pd

from natgrad_core.benchmarking.store import SCHEMA, SCHEMA_VERSION, ResultsStore, conform


def test_numeric_looking_keys_and_labels_stay_strings(tmp_path):
    row = {
        c: (0 if d == "int64" else 0.0 if d == "float64" else "x") for c, (d, _) in SCHEMA.items()
    }
    row.update(
        schema_version=SCHEMA_VERSION,
        convex=True,
        run_key="14e597284008",
        solver="1e5",
        code_version="00123",
        status="max_iter",
    )
    store = ResultsStore(tmp_path)
    store.write_run("14e597284008", conform(pd.DataFrame([row])))
    back = store.load()
    assert back["run_key"].tolist() == ["14e597284008"]
    assert back["solver"].tolist() == ["1e5"]
    assert back["code_version"].tolist() == ["00123"]
    assert store.done_keys() == {"14e597284008"}
