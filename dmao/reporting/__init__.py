"""Reports on finished runs: per-layer architecture tables and figures; over several runs (seeds),
the mean allocation and whether the runs agree."""

from dmao.reporting.architecture import ArchitectureReport, build_report, save_figures
from dmao.reporting.seeds import AllocationSummary

__all__ = ["AllocationSummary", "ArchitectureReport", "build_report", "save_figures"]
