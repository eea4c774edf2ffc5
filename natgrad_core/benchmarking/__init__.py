"""Benchmark harness: problems, references, runner, results store, report and CLI.

Data flow: :mod:`problems` → :mod:`reference` → :mod:`runner` (one run) → :mod:`grid`
(many runs, resumable) → :mod:`store` (one CSV per run) → :mod:`report` (tables, figures,
HTML). :mod:`cli` is the ``natgrad`` command on top.
"""

from .compare import compare
from .grid import DEFAULT_SOLVERS, GridConfig, load_config, run_grid
from .problems import PROBLEMS, SUITES, Problem, get_problem
from .reference import Reference, reference_solution
from .report import build_report, summary_tables
from .runner import RunSpec, SolverConfig, execute
from .store import SCHEMA, SCHEMA_VERSION, ResultsStore

__all__ = [
    # problems and references
    "PROBLEMS",
    "SUITES",
    "Problem",
    "Reference",
    "get_problem",
    "reference_solution",
    # runs and grids
    "DEFAULT_SOLVERS",
    "GridConfig",
    "RunSpec",
    "SolverConfig",
    "execute",
    "load_config",
    "run_grid",
    # results
    "SCHEMA",
    "SCHEMA_VERSION",
    "ResultsStore",
    "build_report",
    "compare",
    "summary_tables",
]
