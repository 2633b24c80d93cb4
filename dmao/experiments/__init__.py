"""Experiments built from several runs (baseline vs DMAO comparisons and ablations)."""

from dmao.experiments.compare import (
    ComparisonResult,
    RunResult,
    RunStatus,
    Variant,
    comparison_status,
    parse_variant,
    run_comparison,
    summarise,
)

__all__ = [
    "ComparisonResult",
    "RunResult",
    "RunStatus",
    "Variant",
    "comparison_status",
    "parse_variant",
    "run_comparison",
    "summarise",
]
