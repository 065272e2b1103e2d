"""A run's report: Markdown for the repository, HTML for the browser, both next to the plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import markdown
import pandas as pd

HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
code {{ background: #f6f6f6; padding: 0 0.2rem; }}
</style></head><body>
{body}
</body></html>
"""


@dataclass
class ReportSection:
    """A titled block: paragraphs of Markdown, an optional table and optional figures."""

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figures: Sequence[Path] = field(default_factory=list)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` with floats rounded to ``digits``."""
    header = "| " + " | ".join(str(column) for column in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(value, digits) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def write_report(directory: Path, title: str, sections: Sequence[ReportSection]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``directory``; figure paths become relative links."""
    parts = [f"# {title}", ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.text:
            parts += [section.text.strip(), ""]
        if section.table is not None and not section.table.empty:
            parts += [markdown_table(section.table), ""]
        for figure in section.figures:
            relative = Path(os.path.relpath(figure.resolve(), directory.resolve()))
            parts += [f"![{figure.stem}]({relative.as_posix()})", ""]
    text = "\n".join(parts)
    markdown_path = directory / "report.md"
    markdown_path.write_text(text, encoding="utf-8")
    html_path = directory / "report.html"
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    html_path.write_text(HTML_PAGE.format(title=title, body=body), encoding="utf-8")
    return markdown_path, html_path
