"""Reports link their figures relative to the report, whatever the run directory's path looks like."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.report import ReportSection, write_report


@pytest.mark.parametrize("relative_runs_root", [True, False])
def test_figure_links_are_relative_to_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 relative_runs_root: bool) -> None:
    monkeypatch.chdir(tmp_path)
    run = Path("runs/20261121T000000Z-demo-abc123") if relative_runs_root else tmp_path / "runs" / "r"
    (run / "plots").mkdir(parents=True)
    figure = run / "plots" / "allocations.png"
    figure.write_bytes(b"\x89PNG")
    markdown_path, html_path = write_report(run, "demo", [ReportSection("Allocations", figures=[figure])])
    assert "![allocations](plots/allocations.png)" in markdown_path.read_text(encoding="utf-8")
    assert 'src="plots/allocations.png"' in html_path.read_text(encoding="utf-8")
