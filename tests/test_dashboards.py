"""The Grafana dashboards shipped in the monitoring role, checked offline: the JSON essentials Grafana needs, every
PromQL expression parsed by promtool (wrapped in a recording-rule file), and every metric a panel reads exported by
slicebed (the data-plane programs' metric definitions, scanned from dataplane/*.py, and prometheus_client's process
metrics).
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from dashboard_queries import DASHBOARDS, MONITORING, expressions, load, metric_names
from helpers import REPO
from prometheus_client import ProcessCollector

SLICE_TYPES = {"slicebed-embb": "embb", "slicebed-urllc": "urllc", "slicebed-mmtc": "mmtc"}
TYPE_QOS = {"embb": "slicebed_user_throughput_bps", "urllc": "slicebed_user_delay_p95_seconds",
            "mmtc": "slicebed_user_delivery_ratio"}
SAMPLE_SUFFIXES = {"Gauge": ("",), "Counter": ("_total",), "Histogram": ("_bucket", "_sum", "_count"),
                   "Summary": ("_sum", "_count"), "Info": ("_info",)}


def datasource_uid() -> str:
    """The uid the datasource provisioning template gives slicebed's Prometheus."""
    template = (MONITORING / "templates" / "grafana-datasource.yml.j2").read_text(encoding="utf-8")
    return re.search(r"^\s+uid: (\S+)$", template, re.MULTILINE).group(1)


def defined_metrics(directory: Path = REPO / "dataplane") -> set[str]:
    """The sample names of every prometheus_client metric defined in ``directory``'s modules."""
    names: set[str] = set()
    for path in directory.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SAMPLE_SUFFIXES
                    and node.args and isinstance(node.args[0], ast.Constant)):
                base = str(node.args[0].value).removesuffix("_total")
                names |= {base + suffix for suffix in SAMPLE_SUFFIXES[node.func.id]}
    return names


def process_metrics() -> set[str]:
    """What prometheus_client's process collector adds to every program's /metrics (CPU seconds, memory)."""
    return {sample.name for family in ProcessCollector(registry=None).collect() for sample in family.samples}


def promtool_check_rules(tmp_path: Path, exprs: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on a recording-rule file with one rule per expression."""
    rules = [{"record": f"slicebed:dashboard:{index}", "expr": expr} for index, (_, expr) in enumerate(exprs)]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False,
                          timeout=60)


def test_one_dashboard_per_slice_type_and_one_for_the_shared_capacities() -> None:
    assert {path.stem for path in DASHBOARDS} == {*SLICE_TYPES, "slicebed-shared"}
    for uid, kind in SLICE_TYPES.items():
        dashboard = load(MONITORING / "files" / "dashboards" / f"{uid}.json")
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "slice"]
        assert variable["query"]["query"] == f'label_values(slicebed_slice_info{{type="{kind}"}}, slice)'
        assert TYPE_QOS[kind] in set().union(*(metric_names(expr) for _, expr in expressions(dashboard)))
    shared_dashboard = load(MONITORING / "files" / "dashboards" / "slicebed-shared.json")
    shared = set().union(*(metric_names(expr) for _, expr in expressions(shared_dashboard)))
    assert {"slicebed_shared_cpu_millicores", "slicebed_shared_bandwidth_mbps"} <= shared


@pytest.mark.parametrize("path", DASHBOARDS, ids=[path.stem for path in DASHBOARDS])
def test_dashboard_has_what_grafana_needs(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"] == path.stem and dashboard["title"].startswith("slicebed: ")
    panels = dashboard["panels"]
    assert panels and len({panel["id"] for panel in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["id"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["id"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & mine, f"panel {panel['id']} overlaps another"
        cells |= mine
        targets = panel["targets"]
        assert targets and len({target["refId"] for target in targets}) == len(targets), panel["id"]
        assert all(target["expr"].strip() for target in targets), panel["id"]
        assert {panel["datasource"]["uid"], *(t["datasource"]["uid"] for t in targets)} == {datasource_uid()}
    for where, expr in expressions(dashboard):
        assert "$" not in expr, f"{where}: an unknown variable in {expr}"


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    exprs = [found for path in DASHBOARDS for found in expressions(load(path))]
    assert len(exprs) > 20
    checked = promtool_check_rules(tmp_path, exprs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


def test_the_promql_check_fails_on_a_broken_expression(tmp_path: Path) -> None:
    checked = promtool_check_rules(tmp_path, [("broken", "sum by (slice) (rate(slicebed_upf_bytes_total[10s])")])
    assert checked.returncode != 0 and "parse error" in checked.stdout + checked.stderr


def test_every_metric_a_dashboard_reads_is_one_slicebed_exports() -> None:
    exported = defined_metrics() | process_metrics()
    unknown = {f"{where}: {name}" for path in DASHBOARDS for where, expr in expressions(load(path))
               for name in metric_names(expr) - exported}
    assert unknown == set()


def test_the_metric_scan_reads_names_and_skips_functions_labels_and_numbers(tmp_path: Path) -> None:
    expr = ('rate(process_cpu_seconds_total{job="slicebed"}[10s]) * 1000 * on (instance) group_left (slice) '
            'group by (instance, slice) (slicebed_ran_work_factor{slice=~".*"}) / 1e6 and vector(3)')
    assert metric_names(expr) == {"process_cpu_seconds_total", "slicebed_ran_work_factor"}
    assert metric_names("slicebed_user_thruput_bps / 1e6") == {"slicebed_user_thruput_bps"}
    (tmp_path / "program.py").write_text('from prometheus_client import Counter, Gauge\n'
                                         'SENT = Counter("demo_sent_bytes", "h", ["slice"])\n'
                                         'RATE = Gauge("demo_rate_bps", "h")\n')
    assert defined_metrics(tmp_path) == {"demo_sent_bytes_total", "demo_rate_bps"}
    assert "slicebed_upf_bytes_total" in defined_metrics()
