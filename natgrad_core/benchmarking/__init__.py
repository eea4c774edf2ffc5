"""Benchmark harness: problems, references, runner, results store, report, CLI."""
