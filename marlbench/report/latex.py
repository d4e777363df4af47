"""LaTeX (booktabs) rendering of the report's tables, and the standalone document around them.

Same :class:`~marlbench.report.tables.Table` as the markdown output: ``\\textbf{}`` for the best
of a row, ``$^*$`` for entries not significantly different from it, ``$^\\dagger$`` for entries
that could not be tested, ``$^\\ddagger$`` for entries whose published number the authors' own
code does not reproduce, ``\\pm`` between mean and std, rows grouped by task with a
``\\midrule`` between groups (none between two consecutive one-row groups, such as SMACv2's
scenarios). Every tabular sits in an ``adjustbox`` that shrinks it to the line width and to 80%
of the text height when it is larger and never enlarges it, so the 39-row and 11-column tables
fit a page. Packages: booktabs, adjustbox, graphicx (figures) and geometry (standalone
document); on Debian ``texlive-latex-base``, ``texlive-latex-recommended`` and
``texlive-latex-extra`` (adjustbox).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from marlbench.report.tables import Cell, Table

# LaTeX's special characters, then the non-ASCII characters our labels and notes use.
_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "α": r"$\alpha$",
    "χ": r"$\chi$",
    "²": r"$^2$",
    "Δ": r"$\Delta$",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "—": "---",
    "–": "--",
    "−": "$-$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "×": r"$\times$",
}
_ESCAPE_PATTERN = re.compile("|".join(re.escape(char) for char in _ESCAPES))
# Shrinks a tabular wider than the line or taller than most of the page; never enlarges one.
SHRINK_TO_PAGE = r"\begin{adjustbox}{max width=\linewidth, max totalheight=0.8\textheight}"


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and known non-ASCII symbols typeset."""
    return _ESCAPE_PATTERN.sub(lambda match: _ESCAPES[match.group(0)], text)


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace("-", "$-$")


def cell_latex(cell: Cell, digits: int) -> str:
    if cell.kind == "missing":
        return "---"
    if cell.kind == "status":
        return escape(cell.status)
    if cell.kind == "diverged":
        return f"diverged ({cell.diverged})"
    if cell.kind == "published":
        text = _number(cell.mean, digits)
        if not math.isnan(cell.std):
            text += rf" $\pm$ {_number(cell.std, digits)}"
        text += r"$^\ddagger$" if cell.not_reproduced else ""
        if cell.delta is None:
            return text
        delta = f"{cell.delta:+.{digits}f}".replace("-", "$-$")
        return rf"{text} ($\Delta$ {delta})"
    text = rf"{_number(cell.mean, digits)} $\pm$ {_number(cell.std, digits)}"
    if cell.bold:
        text = rf"\textbf{{{text}}}"
    text += "$^*$" if cell.star else r"$^\dagger$" if cell.untested else ""
    text += r"$^\ddagger$" if cell.not_reproduced else ""
    if cell.short:
        text += f" (n={cell.seeds})"
    if cell.diverged:
        text += f" ({cell.diverged} div.)"
    return text


def render_latex(table: Table) -> str:
    """A ``table`` float: caption, label, booktabs tabular, notes under it in footnote size."""
    spec = "ll" + "r" * len(table.columns)
    headings = ["task", "dataset"] + [escape(column.label) for column in table.columns]
    body = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(headings) + r" \\", r"\midrule"]
    group_sizes = Counter(table.row_label(instance)[0] for instance in table.instances)
    previous_task = None
    for instance in table.instances:
        task, quality = table.row_label(instance)
        starts_group = previous_task is not None and task != previous_task
        if starts_group and max(group_sizes[task], group_sizes[previous_task]) > 1:
            body.append(r"\midrule")
        entries = [cell_latex(table.cells[(instance, column)], table.digits) for column in table.columns]
        shown_task = escape(task) if task != previous_task else ""
        body.append(" & ".join([shown_task, escape(quality), *entries]) + r" \\")
        previous_task = task
    body += [r"\bottomrule", r"\end{tabular}"]
    tabular = "\n".join([SHRINK_TO_PAGE, *body, r"\end{adjustbox}"])
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{escape(table.caption)}}}",
        rf"\label{{{table.label}}}",
        tabular,
    ]
    if table.notes:
        lines.append(r"\par\smallskip\footnotesize")
        lines += [escape(note) + r"\par" for note in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines)


def standalone_document(body: str) -> str:
    """``body`` wrapped in an article that compiles by itself with pdflatex."""
    return "\n".join(
        [
            r"\documentclass[10pt]{article}",
            r"\usepackage[utf8]{inputenc}",
            r"\usepackage[T1]{fontenc}",
            r"\usepackage[landscape,margin=1.5cm]{geometry}",
            r"\usepackage{booktabs}",
            r"\usepackage{adjustbox}",
            r"\usepackage{graphicx}",
            r"\begin{document}",
            body,
            r"\end{document}",
            "",
        ]
    )
