"""Reports on finished runs: per-layer architecture tables and figures."""

from dmao.reporting.architecture import ArchitectureReport, build_report, save_figures

__all__ = ["ArchitectureReport", "build_report", "save_figures"]
