"""Results to tables, figures and exports. Reads result files only: needs neither torch nor any
algorithm. ``build_report`` (``marlbench.report.build``) writes a benchmark's whole report."""

from marlbench.report.results import load_curves, load_results
from marlbench.report.tables import markdown_table, summarize

__all__ = ["load_curves", "load_results", "markdown_table", "summarize"]
