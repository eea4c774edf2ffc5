"""Grids of runs: suites and TOML configurations → run specifications → stored results.

A configuration (a suite name or a TOML file) is validated completely — every problem,
solver and hyperparameter, every data file — before the first run starts. The grid then
skips every run whose key is already stored (resume), computes the convex references once
in the main process, and executes the rest serially, with joblib (``n_jobs``), or on a
Dask distributed cluster (``dask_address``). Results are written by the main process as
each run finishes, so a killed worker or Ctrl-C loses at most the runs in flight.

The TOML format — ``[run]`` (problems, seeds, budget), ``[[problem]]`` entries (a problem
of your own, e.g. from a data file) and ``[[solver]]`` entries with their
``[solver.params]`` — is documented once, with a complete example that a test runs, in
the README's section "Your own grid: the configuration file". A ``[[solver]]`` entry
starts from the recommended configuration of its ``solver``
(:data:`natgrad_core.optim.registry.RECOMMENDED`, the one source of defaults: the same
configuration ``natgrad list`` shows and the default solver set runs); each
hyperparameter given overrides one. ``natgrad run CONFIG --dry-run`` prints every
resolved hyperparameter of every run.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from .._threads import limit_threads
from .._validation import check_nonnegative, check_positive
from ..optim import make_optimizer
from ..optim.base import batch_refusal
from ..optim.registry import RECOMMENDED, SHIPPED_SOLVERS, recommended_params
from .problems import MAX_SEED, PROBLEMS, SUITES, get_problem, problem_from_dict
from .reference import ReferenceSpec, reference_solution
from .runner import DENSE_FLOP_LIMIT, RunSpec, SolverConfig, execute
from .store import ResultsStore
from .tuning import TuneSpec, candidates, tune_from_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DEFAULT_SOLVERS",
    "NATGRAD_SOLVERS",
    "SUITE_BUDGETS",
    "GridConfig",
    "GridSummary",
    "config_from_dict",
    "load_config",
    "recommended_config",
    "run_grid",
    "suite_config",
    "with_seeds",
]


def recommended_config(solver: str, label: str | None = None, **params) -> SolverConfig:
    """The SolverConfig of ``solver``'s recommended configuration with ``params``
    overriding single hyperparameters, labelled ``label`` (default: the solver name)."""
    try:
        kwargs = recommended_params(solver, **params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"solver {label or solver!r}: {exc}") from None
    return SolverConfig.make(label or solver, solver, **kwargs)


NATGRAD_SOLVERS = tuple(recommended_config(solver) for solver in RECOMMENDED)
"""Every natgrad algorithm in its recommended configuration, labelled by its name."""
DEFAULT_SOLVERS = NATGRAD_SOLVERS + tuple(recommended_config(s) for s in SHIPPED_SOLVERS)
""":data:`NATGRAD_SOLVERS` and every shipped plugin (scikit-learn's solvers) in its
default configuration. A scikit-learn solver runs only on the models it fits
(LogisticRegression: logistic problems; MLP: MLP problems); its runs elsewhere are stored
as not applicable and left out of the tables."""

SUITE_BUDGETS = {
    "quick": {"seeds": (0, 1, 2), "max_iter": 100, "time_limit": 10.0},
    "full": {"seeds": (0, 1, 2), "max_iter": 300, "time_limit": 120.0},
    "scaling": {"seeds": (0,), "max_iter": 50, "time_limit": 300.0},
}
FULL_BATCH_TUNING = TuneSpec(
    seeds=(100, 101),
    spaces=(
        ("momentum", (("learning_rate", (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)),)),
        ("adam", (("learning_rate", (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),)),
        ("sklearn-mlp-adam", (("learning_rate_init", (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),)),
        ("sklearn-mlp-sgd", (("learning_rate_init", (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),)),
    ),
)
"""The search of the full-batch suites (quick, full): the learning rates of momentum and
Adam on log grids around their recommended values (half-decade steps), and those of
scikit-learn's MLP Adam and SGD from scikit-learn's default 1e-3 up, two tuning seeds,
the lowest final training loss. gd and the natural-gradient solvers have no rate to tune
(Armijo, Levenberg–Marquardt and the quadratic model set their steps), L-BFGS neither
(natgrad's or scikit-learn's), nor scikit-learn's Newton solvers; they run in their
recommended (or scikit-learn's default) configurations."""

_K_FAC = {"fisher": "mc", "ema_decay": 0.95, "inv_period": 20}
"""K-FAC and EKFAC as Martens & Grosse (2015) train with mini-batches: the Fisher of
labels sampled from the model (one per example), factors as exponential moving averages
(decay 0.95, their ε), inverses refreshed every 20th step (their T₃); the step length,
momentum and damping from the quadratic model (the recommended step)."""


def _stochastic(problems, epochs, seeds, tune_seeds, momentum, adam, damping, batches):
    """A mini-batch suite, declared in the configuration format (and validated by it):
    ``problems`` maps each problem to (epochs, records per epoch, target gap, reference
    L-BFGS iterations); ``epochs`` is the budget of problems that do not say."""
    return {
        "run": {
            "problems": list(problems),
            "seeds": seeds,
            "epochs": epochs,
            "records_per_epoch": 4,
            "batch_size": 128,
            "time_limit": 600.0,
            "tol": 0.0,
            "fidelity": False,
            "target_gap": 0.1,
            # the exact Fisher of a mini-batch (sample space, K·B rows) would take seconds
            # per update here: such runs are skipped, and the tables say why
            "dense_flop_limit": 1e10,
            "by_problem": {
                name: {"epochs": e, "records_per_epoch": r, "target_gap": g}
                for name, (e, r, g, _) in problems.items()
            },
        },
        "solver": [
            {"solver": "momentum", "label": "sgd-momentum", "params": {"momentum": 0.9}},
            {"solver": "adam", "params": {"learning_rate": 1e-3}},
            {"solver": "kfac", "params": _K_FAC},
            {"solver": "ekfac", "params": _K_FAC},
            {"solver": "exact"},
        ],
        "tune": {
            "seeds": tune_seeds,
            "rule": "final_loss",
            "space": {
                "sgd-momentum": {"learning_rate": momentum, "batch_size": batches},
                "adam": {"learning_rate": adam, "batch_size": batches},
                "kfac": {"damping": damping},
                "ekfac": {"damping": damping},
            },
        },
        # full-batch L-BFGS, long: the strongest run the pilot found on three of the four
        # problems (and within 2% of the best on the fourth), deterministic, tuning-free
        "reference": {
            "solver": "lbfgs",
            "max_iter": 1000,
            "by_problem": {name: {"max_iter": it} for name, (*_, it) in problems.items()},
        },
    }


SUITE_TABLES = {
    "stochastic": _stochastic(
        {
            # problem: (epochs, records per epoch, target gap ρ, reference iterations)
            "digits-mlp": (20, 4, 1e-3, 1000),
            "digits-autoencoder": (30, 4, 0.2, 3000),
            "digits-deep-autoencoder": (20, 4, 0.1, 1000),
            "synthetic-mlp-n20000-d100": (5, 2, 0.2, 150),
        },
        epochs=20,
        seeds=[0, 1, 2],
        tune_seeds=[100, 101],
        momentum=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
        adam=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        damping=[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        batches=[64, 128, 256],
    ),
    "stochastic-quick": _stochastic(
        {
            "digits-mlp": (10, 4, 1e-3, 300),
            "digits-autoencoder": (15, 4, 0.2, 1000),
            "synthetic-mlp-n4000-d100": (3, 2, 0.2, 100),
        },
        epochs=10,
        seeds=[0, 1],
        tune_seeds=[100],
        momentum=[0.01, 0.03, 0.1, 0.3],
        adam=[1e-3, 3e-3, 1e-2],
        damping=[1e-3, 1e-2, 1e-1],
        batches=[128],
    ),
}
"""Suites declared in the configuration format (``natgrad run FILE.toml``'s): validated
by the same code, listed by ``natgrad list suites``."""

_RUN_KEYS = {
    "suite",
    "problems",
    "seeds",
    "max_iter",
    "time_limit",
    "target_suboptimality",
    "tol",
    "batch_size",
    "fidelity",
    "epochs",
    "record_every",
    "records_per_epoch",
    "target_gap",
    "by_problem",
    "dense_flop_limit",
}
_REFERENCE_KEYS = {"solver", "params", "max_iter", "batch_size"}
_BY_PROBLEM_KEYS = {"epochs", "records_per_epoch", "target_gap"}
"""Keys of ``[run.by_problem.<problem>]``: one problem's own budget and target."""


@dataclass(frozen=True)
class GridConfig:
    """A validated grid: problems × solvers × seeds with one budget."""

    name: str
    problems: tuple
    solvers: tuple
    seeds: tuple
    max_iter: int = 100
    time_limit: float = 10.0
    target_suboptimality: float = 1e-10
    tol: float = 1e-10
    batch_size: int | None = None
    fidelity: bool = True
    epochs: int | None = None
    record_every: int = 1
    records_per_epoch: int | None = None
    reference: ReferenceSpec | None = None
    tune: TuneSpec | None = None
    dense_flop_limit: float = DENSE_FLOP_LIMIT
    """Runs of the exact solver whose one dense step needs more flops are skipped (status
    "skipped", the reason in the message), not attempted."""
    target_gap: float | None = None
    """The report's training-loss target (``report.metrics.to_target``): a run reaches it
    when ``loss - F* <= target_gap * (L0 - F*)``; None: no such table. Not a stopping
    rule, so not part of any run's key."""
    solvers_by_problem: tuple = ()
    """``((problem name, (SolverConfig, ...)), ...)``: the solvers of those problems,
    in place of ``solvers`` (a tuned grid's reported phase, see :mod:`.tuning`)."""
    by_problem: tuple = ()
    """``((problem name, ((key, value), ...)), ...)``: that problem's own ``epochs``,
    ``records_per_epoch`` and ``target_gap`` (``[run.by_problem.<problem>]``)."""
    reference_by_problem: tuple = ()
    """``((problem name, ReferenceSpec), ...)``: that problem's own long reference run
    (``[reference.by_problem.<problem>]``)."""

    def _own(self, problem) -> dict:
        return dict(dict(self.by_problem).get(problem.name, ()))

    def target_gaps(self) -> dict:
        """Problem name -> the report's target gap (problems without one left out)."""
        gaps = {p.name: self._own(p).get("target_gap", self.target_gap) for p in self.problems}
        return {name: gap for name, gap in gaps.items() if gap is not None}

    def solvers_for(self, problem) -> tuple:
        return dict(self.solvers_by_problem).get(problem.name, self.solvers)

    def specs(self) -> list[RunSpec]:
        """Every run of the grid. A grid with ``tune`` whose reported phase is not yet
        known (:func:`tuning.reported_grid`) has none; its tuning phase is
        :func:`tuning.tuning_grid`."""
        if self.tune is not None and not self.solvers_by_problem:
            return []
        return [
            self.spec(p, s, seed)
            for p in self.problems
            for s in self.solvers_for(p)
            for seed in self.seeds
        ]

    def spec(self, problem, solver, seed: int) -> RunSpec:
        """The run of ``solver`` (a SolverConfig; its own batch size, if it has one,
        overrides the grid's) on ``problem`` with ``seed`` under this grid's budget."""
        batch = self.batch_size if solver.batch_size is None else solver.batch_size
        own = self._own(problem)
        return RunSpec(
            problem,
            solver,
            seed,
            self.max_iter,
            self.time_limit,
            self.target_suboptimality,
            self.tol,
            batch,
            self.fidelity,
            own.get("epochs", self.epochs),
            self.record_every,
            dict(self.reference_by_problem).get(problem.name, self.reference),
            self.dense_flop_limit,
            own.get("records_per_epoch", self.records_per_epoch),
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "problems": [p.to_dict() for p in self.problems],
            "solvers": [s.to_dict() for s in self.solvers],
            "seeds": list(self.seeds),
            "max_iter": self.max_iter,
            "time_limit": self.time_limit,
            "target_suboptimality": self.target_suboptimality,
            "tol": self.tol,
            "batch_size": self.batch_size,
            "fidelity": self.fidelity,
            "epochs": self.epochs,
            "record_every": self.record_every,
            "records_per_epoch": self.records_per_epoch,
            "reference": None if self.reference is None else self.reference.to_dict(),
            "tune": None if self.tune is None else self.tune.to_dict(),
            "target_gap": self.target_gap,
            "dense_flop_limit": self.dense_flop_limit,
            "by_problem": {name: dict(items) for name, items in self.by_problem},
            "reference_by_problem": {
                name: ref.to_dict() for name, ref in self.reference_by_problem
            },
            "tuned_solvers": {
                name: [s.to_dict() for s in solvers] for name, solvers in self.solvers_by_problem
            },
        }


def suite_config(name: str) -> GridConfig:
    if name in SUITE_TABLES:
        return config_from_dict(SUITE_TABLES[name], name)
    if name not in SUITES:
        raise ValueError(
            f"Unknown suite {name!r}; expected one of {sorted(SUITES)} or a path to a .toml file."
        )
    budget = SUITE_BUDGETS[name]
    return GridConfig(
        name,
        tuple(get_problem(p) for p in SUITES[name]),
        DEFAULT_SOLVERS,
        tuple(budget["seeds"]),
        budget["max_iter"],
        budget["time_limit"],
        tune=FULL_BATCH_TUNING if name in ("quick", "full") else None,
    )


def _check_type(value, types, what):
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = "/".join(t.__name__ for t in types)
        raise ValueError(f"{what} must be {names}, got {type(value).__name__} ({value!r}).")
    return value


def _check_seeds(seeds, what: str = "seeds") -> list:
    """A non-empty list of distinct integer seeds in [0, MAX_SEED]."""
    seeds = _check_type(seeds, (list,), what)
    for seed in seeds:
        _check_type(seed, (int,), f"every seed in {what}")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seeds must be in [0, {MAX_SEED}], got {seed} in {what}.")
    if not seeds:
        raise ValueError(f"{what} must list at least one seed, got [].")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"duplicate seeds in {what}: {seeds}.")
    return seeds


def _tables(raw: dict, key: str) -> list[dict]:
    """The ``[[key]]`` entries of a TOML document (an array of tables), checked."""
    entries = raw.get(key, [])
    if isinstance(entries, dict):
        raise ValueError(
            f"expected [[{key}]] entries (an array of tables), got a single table [{key}]."
        )
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(
            f"expected [[{key}]] entries (an array of tables), got {key} = {entries!r}."
        )
    return entries


def config_from_dict(
    raw: dict, name: str, base_dir: Path = Path(), source: str | None = None
) -> GridConfig:
    """Validate a parsed TOML document (see module doc), its problems' data files
    included; raises ValueError naming ``source`` (the file; default ``name``) and the
    entry."""
    try:
        return _config_from_dict(raw, name, base_dir)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source or name}: {exc}") from None


def _config_from_dict(raw: dict, name: str, base_dir: Path) -> GridConfig:
    unknown = set(raw) - {"run", "problem", "solver", "reference", "tune"}
    if unknown:
        raise ValueError(
            f"unknown top-level tables {sorted(unknown)}; expected [run], [[problem]], "
            "[[solver]], [reference], [tune]."
        )
    run = raw.get("run", {})
    if not isinstance(run, dict):
        shape = "an array of tables [[run]]" if isinstance(run, list) else f"run = {run!r}"
        raise ValueError(f"expected one table [run], got {shape}.")
    bad = set(run) - _RUN_KEYS
    if bad:
        raise ValueError(
            f"unknown keys in [run]: {sorted(bad)}; expected some of {sorted(_RUN_KEYS)}."
        )
    base = None
    if "suite" in run:
        base = suite_config(_check_type(run["suite"], (str,), "[run].suite"))

    custom = {}
    for entry in _tables(raw, "problem"):
        entry = dict(entry)
        if entry.get("dataset") == "file" and isinstance(entry.get("path"), str):
            path = Path(entry["path"]).expanduser()
            entry["path"] = str(path if path.is_absolute() else base_dir / path)
        problem = problem_from_dict(entry)
        if problem.name in custom:
            raise ValueError(f"two [[problem]] entries are named {problem.name!r}.")
        custom[problem.name] = problem
    if "problems" in run:
        names = _check_type(run["problems"], (list,), "[run].problems")
        if not names:
            raise ValueError("[run].problems is empty; expected at least one problem name.")
        problems = []
        for pname in names:
            if pname in custom:
                problems.append(custom[pname])
            elif isinstance(pname, str) and pname in PROBLEMS:
                problems.append(PROBLEMS[pname])
            else:
                raise ValueError(
                    f"unknown problem {pname!r} in [run].problems; expected a [[problem]] "
                    f"name or one of {sorted(PROBLEMS)}."
                )
        if len(set(names)) != len(names):
            twice = sorted({p for p in names if names.count(p) > 1})
            raise ValueError(f"[run].problems lists {twice} more than once.")
    elif custom:
        problems = list(custom.values())
    elif base is not None:
        problems = list(base.problems)
    else:
        raise ValueError("no problems; give [run].suite, [run].problems or [[problem]] entries.")

    solvers = [_solver_from_entry(entry) for entry in _tables(raw, "solver")]
    labels = [s.label for s in solvers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate solver labels in {labels}.")
    if not solvers:
        solvers = list(base.solvers if base is not None else DEFAULT_SOLVERS)

    defaults = base or GridConfig(name, (), (), (0, 1, 2))
    seeds = _check_seeds(run.get("seeds", list(defaults.seeds)), "[run].seeds")
    max_iter = _check_type(run.get("max_iter", defaults.max_iter), (int,), "[run].max_iter")
    if max_iter < 1 and (defaults.epochs is None or "max_iter" in run):
        raise ValueError(f"[run].max_iter must be >= 1, got {max_iter}.")
    time_limit = check_positive(run.get("time_limit", defaults.time_limit), "[run].time_limit")
    target = check_nonnegative(
        run.get("target_suboptimality", defaults.target_suboptimality),
        "[run].target_suboptimality",
    )
    tol = check_nonnegative(run.get("tol", defaults.tol), "[run].tol")
    batch = _check_type(run.get("batch_size", defaults.batch_size or 0), (int,), "[run].batch_size")
    if batch < 0:
        raise ValueError(f"[run].batch_size must be >= 0 (0 = full batch), got {batch}.")
    fidelity = _check_type(run.get("fidelity", defaults.fidelity), (bool,), "[run].fidelity")
    epochs = run.get("epochs", defaults.epochs if "max_iter" not in run else None)
    if epochs is not None:
        if "max_iter" in run:
            raise ValueError(
                "[run] gives both max_iter and epochs; expected one budget: max_iter (steps) "
                "or epochs (passes over the training data)."
            )
        epochs = _check_type(epochs, (int,), "[run].epochs")
        if epochs < 1:
            raise ValueError(f"[run].epochs must be >= 1, got {epochs}.")
        max_iter = 0
    record_every = _check_type(
        run.get("record_every", defaults.record_every), (int,), "[run].record_every"
    )
    if record_every < 1:
        raise ValueError(f"[run].record_every must be >= 1, got {record_every}.")
    records_per_epoch = run.get("records_per_epoch", defaults.records_per_epoch)
    if "record_every" in run and "records_per_epoch" in run:
        raise ValueError(
            "[run] gives both record_every and records_per_epoch; expected one of them."
        )
    if "record_every" in run:
        records_per_epoch = None
    if records_per_epoch is not None:
        records_per_epoch = _check_type(records_per_epoch, (int,), "[run].records_per_epoch")
        if records_per_epoch < 1:
            raise ValueError(f"[run].records_per_epoch must be >= 1, got {records_per_epoch}.")
        if epochs is None:
            raise ValueError("[run].records_per_epoch needs an epoch budget ([run].epochs).")
    check_batch_sizes(solvers, batch)
    reference = defaults.reference
    reference_by_problem = defaults.reference_by_problem
    if "reference" in raw:
        reference, reference_by_problem = _references(raw["reference"], problems)
    # a suite's search spaces name the suite's solvers: kept only with them
    tune = defaults.tune if not raw.get("solver") else None
    if "tune" in raw:
        tune = tune_from_table(raw["tune"], [s.label for s in solvers])
    if tune is not None:
        tune = _check_tune(tune, seeds, solvers, batch)
    dense_flop_limit = check_positive(
        run.get("dense_flop_limit", defaults.dense_flop_limit), "[run].dense_flop_limit"
    )
    target_gap = run.get("target_gap", defaults.target_gap)
    if target_gap is not None:
        target_gap = check_positive(target_gap, "[run].target_gap")
        if target_gap >= 1:
            raise ValueError(
                f"[run].target_gap must be in (0, 1) (the fraction of the initial gap "
                f"L0 - F* left at the target), got {target_gap!r}."
            )
    by_problem = defaults.by_problem
    if "by_problem" in run:
        by_problem = _by_problem(run["by_problem"], problems, epochs)
    for problem in problems:
        problem.validate(seeds)
    return GridConfig(
        name,
        tuple(problems),
        tuple(solvers),
        tuple(seeds),
        max_iter,
        time_limit,
        target,
        tol,
        batch or None,
        fidelity,
        epochs,
        record_every,
        records_per_epoch,
        reference,
        tune,
        dense_flop_limit,
        target_gap,
        by_problem=by_problem,
        reference_by_problem=reference_by_problem,
    )


def _by_problem(table, problems, epochs) -> tuple:
    """``[run.by_problem.<problem>]`` tables, checked like the ``[run]`` keys they
    override."""
    out = []
    for name, entry in _problem_tables(table, problems, "run.by_problem"):
        where = f"[run.by_problem.{name}]"
        bad = set(entry) - _BY_PROBLEM_KEYS
        if bad:
            raise ValueError(
                f"unknown keys in {where}: {sorted(bad)}; expected some of "
                f"{sorted(_BY_PROBLEM_KEYS)}."
            )
        if epochs is None and "epochs" in entry:
            raise ValueError(f"{where}.epochs needs an epoch budget in [run] (epochs).")
        for key in ("epochs", "records_per_epoch"):
            if key in entry and (_check_type(entry[key], (int,), f"{where}.{key}") < 1):
                raise ValueError(f"{where}.{key} must be >= 1, got {entry[key]}.")
        if "target_gap" in entry:
            gap = check_positive(entry["target_gap"], f"{where}.target_gap")
            if gap >= 1:
                raise ValueError(f"{where}.target_gap must be in (0, 1), got {gap!r}.")
        out.append((name, tuple(sorted(entry.items()))))
    return tuple(out)


def _problem_tables(table, problems, where: str):
    """The ``(problem name, table)`` pairs of the ``[<where>.<problem>]`` tables, each
    naming a problem of the grid."""
    if not isinstance(table, dict):
        raise ValueError(f"expected [{where}.<problem>] tables, got {table!r}.")
    names = {p.name for p in problems}
    for name, entry in table.items():
        if name not in names:
            raise ValueError(
                f"[{where}.{name}]: no problem {name!r} in this grid; expected one of "
                f"{sorted(names)}."
            )
        if not isinstance(entry, dict):
            raise ValueError(f"[{where}.{name}] must be a table, got {entry!r}.")
        yield name, entry


def _references(table, problems) -> tuple:
    """``[reference]`` and its ``[reference.by_problem.<problem>]`` tables (each key
    overriding the base reference's for that problem)."""
    if not isinstance(table, dict):
        raise ValueError(f"expected one table [reference], got reference = {table!r}.")
    table = dict(table)
    by_problem = table.pop("by_problem", {})
    base = _reference_from_table(table)
    out = []
    for name, entry in _problem_tables(by_problem, problems, "reference.by_problem"):
        merged = {**table, **entry}
        try:
            out.append((name, _reference_from_table(merged)))
        except ValueError as exc:
            raise ValueError(f"[reference.by_problem.{name}]: {exc}") from None
    return base, tuple(out)


def _check_tune(tune: TuneSpec, seeds, solvers, batch) -> TuneSpec:
    """Tuning seeds valid and apart from the reported ones; every candidate valid."""
    tuning_seeds = _check_seeds(list(tune.seeds), "[tune].seeds")
    shared = sorted(set(tuning_seeds) & set(seeds))
    if shared:
        raise ValueError(
            f"[tune].seeds and [run].seeds share {shared}; expected disjoint seeds (the "
            "reported numbers are measured on seeds the search never saw)."
        )
    for solver in solvers:
        if solver.label in tune.labels:
            check_batch_sizes(candidates(tune, solver), batch)
    return replace(tune, seeds=tuple(tuning_seeds))


def check_batch_sizes(solvers, batch: int | None) -> None:
    """Refuse mini-batches (its own or the grid's) to a solver that takes none from the
    driver (:func:`optim.base.batch_refusal`)."""
    for s in solvers:
        size = batch if s.batch_size is None else s.batch_size
        refusal = batch_refusal(make_optimizer(s.solver, **s.kwargs)) if size else None
        if refusal is not None:
            raise ValueError(
                f"solver {s.label!r} ({s.solver}) {refusal}, but its batch_size is {size}."
            )


def _reference_from_table(table) -> ReferenceSpec:
    """The ``[reference]`` table: the long reference run of the non-convex problems."""
    if not isinstance(table, dict):
        raise ValueError(f"expected one table [reference], got reference = {table!r}.")
    bad = set(table) - _REFERENCE_KEYS
    if bad:
        raise ValueError(
            f"unknown keys in [reference]: {sorted(bad)}; expected some of "
            f"{sorted(_REFERENCE_KEYS)}."
        )
    solver = _check_type(table.get("solver"), (str,), "[reference].solver")
    params = _check_type(table.get("params", {}), (dict,), "[reference].params")
    batch = _check_type(table.get("batch_size", 0), (int,), "[reference].batch_size")
    return ReferenceSpec(
        solver,
        tuple(sorted(params.items())),
        _check_type(table.get("max_iter", 1000), (int,), "[reference].max_iter"),
        batch or None,
    )


def _solver_from_entry(entry: dict) -> SolverConfig:
    """One ``[[solver]]`` entry: ``solver``, ``label`` and the hyperparameters, given in
    its ``[solver.params]`` table or (the older, flat form) beside ``solver``; a
    hyperparameter given in both places is refused. Both forms resolve to the same
    configuration, hence the same run keys."""
    entry = dict(entry)
    solver = entry.pop("solver", None)
    label = entry.pop("label", solver)
    params = entry.pop("params", {})
    batch = entry.pop("batch_size", None)
    if not isinstance(label, str) or not isinstance(solver, str):
        raise ValueError(
            f"every [[solver]] needs a string 'solver' (and 'label', if given), "
            f"got solver={solver!r} and label={label!r}."
        )
    if not isinstance(params, dict):
        raise ValueError(
            f"solver {label!r}: expected the hyperparameters in a table [solver.params], "
            f"got params = {params!r}."
        )
    twice = sorted(set(params) & set(entry))
    if twice:
        raise ValueError(
            f"solver {label!r}: {twice} given both in [[solver]] and in [solver.params]; "
            "expected each hyperparameter once (in [solver.params])."
        )
    config = recommended_config(solver, label, **entry, **params)
    if batch is None:
        return config
    batch = _check_type(batch, (int,), f"solver {label!r}: batch_size")
    return replace(config, batch_size=batch or None)


def load_config(source: str) -> GridConfig:
    """A suite name, or the path of a TOML file (validated, see module doc)."""
    if source in SUITES:
        return suite_config(source)
    path = Path(source)
    if path.suffix != ".toml":
        raise ValueError(
            f"Unknown suite {source!r}; expected one of {sorted(SUITES)} or a path to a .toml file."
        )
    if not path.is_file():
        raise ValueError(f"Config file not found: {source!r}.")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: malformed TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: cannot read the configuration: {exc}") from None
    return config_from_dict(raw, path.stem, path.parent, source)


@dataclass
class GridSummary:
    """What :func:`run_grid` did. ``n_stored_errors``: runs skipped because they are
    stored with status "error" (``retry_errors=False``); ``n_errors``: runs that ended in
    "error" now. Either makes the grid a failure."""

    n_total: int
    n_resumed: int
    n_ran: int
    n_errors: int
    interrupted: bool = False
    n_stored_errors: int = 0


def _reference(problem, seed, reference, cache_dir, blas_threads: int = 1) -> None:
    try:
        with limit_threads(blas_threads):
            reference_solution(problem.load(seed), cache_dir, reference, seed)
    except Exception:  # the runs that need it record the error
        return


def _prepare_references(specs: Iterable[RunSpec], cache_dir, n_jobs: int = 1, threads: int = 1):
    """Compute (and cache) every reference the runs need before they start: one per
    problem and seed (the seed draws the training data and, for a long reference run,
    the initialization), in parallel on ``n_jobs`` workers when there are several."""
    tasks = {}
    for spec in specs:
        if spec.problem.convex or spec.reference is not None:
            tasks.setdefault((spec.problem, spec.seed, spec.reference), None)
    if n_jobs > 1 and cache_dir is not None and len(tasks) > 1:
        from joblib import Parallel, delayed

        Parallel(n_jobs=min(n_jobs, len(tasks)))(
            delayed(_reference)(*task, cache_dir, threads) for task in tasks
        )
    for task in tasks:  # serially, or to load what the workers cached
        _reference(*task, cache_dir, threads)


def _dask_results(specs, address, cache_dir, threads):
    from dask.distributed import Client, as_completed

    with Client(address) as client:
        workers = client.scheduler_info()["workers"].values()
        per_host: dict = {}
        for w in workers:
            host = w.get("host", "?")
            per_host[host] = per_host.get(host, 0) + int(w.get("nthreads", 1))
        concurrent = max(per_host.values()) if per_host else 1
        futures = client.map(
            execute,
            specs,
            cache_dir=cache_dir,
            n_concurrent=concurrent,
            blas_threads=threads,
            pure=False,
        )
        for future in as_completed(futures):
            yield future.result()


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask (taskset, a container's CPU set),
    else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_grid(
    config: GridConfig,
    store: ResultsStore,
    n_jobs: int = 1,
    dask_address: str | None = None,
    cache_dir=None,
    progress: bool = True,
    blas_threads: int = 1,
    retry_errors: bool = False,
) -> GridSummary:
    """Run every pending run of ``config`` and store each as it finishes.

    Pending: not stored, stored in a damaged file (quarantined by
    :meth:`ResultsStore.statuses`), or stored with status "error" when ``retry_errors``.
    Every run is pinned to ``blas_threads`` BLAS threads (default 1: the problems are small,
    timings stay comparable across ``n_jobs``, and parallel workers do not oversubscribe
    the cores). Dask workers use the same pinning. ``n_jobs`` is capped at the number of
    pending runs (an idle worker is a whole interpreter for nothing), and a warning says
    when the workers outnumber :func:`available_cores`: they then share cores, and each
    run's time is inflated. Ctrl-C (KeyboardInterrupt) at any point, the references
    included, ends the grid with ``interrupted`` set; every run finished so far is stored.
    """
    specs = config.specs()
    stored = store.statuses()
    errors = {key for key, status in stored.items() if status == "error"}
    done = set(stored) - errors if retry_errors else set(stored)
    pending = [s for s in specs if s.key() not in done]
    summary = GridSummary(len(specs), len(specs) - len(pending), 0, 0)
    summary.n_stored_errors = sum(s.key() in errors for s in specs if s.key() in done)
    if not pending:
        return summary
    n_workers = min(n_jobs, len(pending))
    cores = available_cores()
    if dask_address is None and n_workers > cores:
        warnings.warn(
            f"n_jobs={n_jobs} starts {n_workers} workers for {len(pending)} pending runs on "
            f"{cores} available cores: they will share the cores and every run's time is "
            f"inflated; n_jobs <= {cores} is faster.",
            RuntimeWarning,
            stacklevel=2,
        )
    bar = None
    try:
        _prepare_references(pending, cache_dir, 1 if dask_address else n_workers, blas_threads)
        if dask_address is not None:
            results = _dask_results(pending, dask_address, cache_dir, blas_threads)
        elif n_workers > 1:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=n_workers, return_as="generator_unordered")(
                delayed(execute)(s, cache_dir, n_workers, blas_threads) for s in pending
            )
        else:
            results = (execute(s, cache_dir, 1, blas_threads) for s in pending)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pending), unit="run", desc=config.name)
        for frame in results:
            store.write_run(frame["run_key"].iloc[0], frame)
            summary.n_ran += 1
            summary.n_errors += int(frame["status"].iloc[0] == "error")
            if bar is not None:
                last = frame.iloc[-1]
                bar.set_postfix_str(f"{last['problem']} {last['solver']} {last['status']}")
                bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if bar is not None:
            bar.close()
    return summary


def with_seeds(config: GridConfig, seeds) -> GridConfig:
    """``config`` with other seeds (duplicates dropped, order kept), validated as
    ``[run].seeds`` with its data files (and apart from the tuning seeds)."""
    seeds = _check_seeds(list(dict.fromkeys(seeds)))
    for problem in config.problems:
        problem.validate(seeds)
    if config.tune is not None:
        _check_tune(config.tune, seeds, config.solvers, config.batch_size or 0)
    return replace(config, seeds=tuple(seeds))
