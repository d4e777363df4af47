"""Results to tables. Reads result files only: needs neither torch nor any algorithm."""

from marlbench.report.results import load_results
from marlbench.report.tables import markdown_table, summarize

__all__ = ["load_results", "markdown_table", "summarize"]
