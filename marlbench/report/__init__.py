"""Results to tables, figures and exports. Reads files only: needs neither torch, nor any algorithm,
nor a simulator. ``write_report`` (``marlbench.report.build``, what ``marlbench report`` runs) writes a
benchmark's whole report from its run directories and the grid plan beside them (``marlbench.plan``)."""

from marlbench.report.results import load_curves, load_results
from marlbench.report.tables import markdown_table, summarize

__all__ = ["load_curves", "load_results", "markdown_table", "summarize"]
