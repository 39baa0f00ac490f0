"""Recording runs (a SQLite or PostgreSQL store, one artefact folder per run) and reporting them (Markdown, PNG)."""

from lifelong.results.report import plot_importance, write_report, write_sweep_report
from lifelong.results.store import Store

__all__ = ["Store", "plot_importance", "write_report", "write_sweep_report"]
