"""Experiments built from several runs (baseline vs DMAO comparisons)."""

from dmao.experiments.compare import ComparisonResult, RunResult, run_comparison, summarise

__all__ = ["ComparisonResult", "RunResult", "run_comparison", "summarise"]
