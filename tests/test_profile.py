"""`slicebed profile` without a testbed: the spec's validation, bad input as one error line with nothing created, the
VNF usage readers on real processes, and the demand CSV, plot and report writers.

The profile against a real testbed is in tests/test_local_e2e.py (on the end-to-end testbed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from helpers import REPO, assert_one_error_line, run_cli, set_dotted, write_file
from local_testbed import write_local_inventory
from PIL import Image

from controller.deploy.inventory import load_inventory
from controller.profile.outputs import plot_cores_vs_users, write_demand_csv, write_profile_outputs
from controller.profile.runner import DEMAND_COLUMNS, ProfileTarget
from controller.profile.spec import ProfileSpec, load_profile_spec
from controller.profile.usage import process_cpu_seconds, process_rss_mib
from core.commands import CommandError, LocalRunner
from core.errors import InputError
from core.runstore import RunStore

EXAMPLE = REPO / "experiments" / "profile-local-3slices.yaml"
NEVER_UP = "sbnone-"  # a prefix no test brings up


def _spec(tmp_path: Path, edit: dict[str, Any] | None = None) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["inventory"] = str(write_local_inventory(tmp_path, NEVER_UP, "10.95.9"))
    for key, value in (edit or {}).items():
        set_dotted(document, key, value)
    return write_file(tmp_path / "profile.yaml", document)


def test_the_shipped_profile_loads_with_its_inventory_resolved_beside_it() -> None:
    spec = load_profile_spec(EXAMPLE)
    assert spec.slices == ["embb", "urllc", "mmtc"] and spec.users == [1, 2, 4, 8]
    assert spec.inventory == (REPO / "inventory" / "local.yml").resolve()
    assert spec.steps == 12
    assert {s.name for s in load_inventory(spec.inventory).settings.slices} >= set(spec.slices)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("users", [1, 0, 2], "users[1]: Input should be greater than 0, got 0"),
    ("users", [2, 1], "users [2, 1] must increase"),
    ("users", [], "users: List should have at least 1 item"),
    ("slices", ["embb", "embb"], "'embb' appears twice"),
    ("dwell_s", 1, "dwell_s: Input should be greater than or equal to 2"),
    ("allocation.cpu_millicores", -5, "allocation.cpu_millicores: Input should be greater than 0"),
    ("allocation.gpu", 1, "allocation.gpu: unknown key (allowed keys: bandwidth_mbps, cpu_millicores)"),
])
def test_a_bad_spec_is_one_line_naming_the_key(tmp_path: Path, key: str, value: Any, message: str) -> None:
    with pytest.raises(InputError, match=r"profile\.yaml: ") as raised:
        load_profile_spec(_spec(tmp_path, {key: value}))
    assert message in str(raised.value)


@pytest.mark.parametrize(("edit", "fragments"), [
    ({"slices": ["embb", "video"]}, ["profile.yaml: slices[1]: unknown slice 'video'", "has embb, urllc, mmtc"]),
    ({"users": [0, 1]}, ["profile.yaml: users[0]: Input should be greater than 0"]),
    ({}, ["the local testbed sbnone- is not (fully) up", "run `slicebed testbed up --inventory"]),
])
def test_bad_input_and_a_testbed_that_is_down_are_one_line_and_create_no_run(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], edit: dict[str, Any], fragments: list[str]) -> None:
    runs = tmp_path / "runs"
    code, out, err = run_cli(["--runs-dir", str(runs), "profile", str(_spec(tmp_path, edit))], capfd)
    assert code == 2 and out == ""
    assert_one_error_line(err, *fragments)
    assert not runs.exists()


BUSY_CHILD = """\
import time
while time.process_time() < 1.0:  # one CPU second, however busy the machine is
    pass
block = bytearray(64 << 20)
print("ready", flush=True)
time.sleep(30)
"""


def test_the_usage_readers_see_a_real_process_spend_cpu_and_hold_memory() -> None:
    runner = LocalRunner()
    busy = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "ready"
        cpu = process_cpu_seconds(runner, busy.pid)
        assert 0.95 <= cpu <= 1.6, cpu  # the loop's second (whole ticks), start-up, the 64 MiB block
        assert process_rss_mib(runner, busy.pid) >= 64
        assert process_cpu_seconds(runner, os.getpid()) > 0
    finally:
        busy.kill()
        busy.wait()
        busy.stdout.close()
    with pytest.raises(CommandError, match=f"cannot read /proc/{busy.pid}/stat"):
        process_cpu_seconds(runner, busy.pid)


def _table() -> pd.DataFrame:
    """A measured-looking demand table: two slice types, two user counts, four VNFs (the RAN at its quota once)."""
    rows = []
    for slice_type, name, base in (("embb", "embb", 0.10), ("urllc", "urllc", 0.03)):
        for users in (1, 4):
            for index, vnf in enumerate(("app_server", "upf", "ran_emulator", "ue_sink")):
                cores = base * users * (3 if vnf == "ran_emulator" else 1) / (index + 1)
                rows.append({"vnf": vnf, "slice_type": slice_type, "slice": name, "users": users,
                             "host_cores": min(cores, 0.5), "nominal_cores": min(cores, 0.5) / 0.125,
                             "memory_mb": 30.0 + index, "throughput_mbps": 11.5 * users, "qos": 11.5,
                             "qos_kind": "throughput_mbps",
                             "at_cpu_quota": (name, users, vnf) == ("embb", 4, "ran_emulator")})
    return pd.DataFrame(rows)


def test_the_demand_csv_has_the_tables_columns_and_refuses_a_table_without_them(tmp_path: Path) -> None:
    path = write_demand_csv(_table(), tmp_path / "demand.csv")
    read = pd.read_csv(path)
    assert tuple(read.columns) == DEMAND_COLUMNS
    assert len(read) == 16 and (read["nominal_cores"] == (read["host_cores"] / 0.125).round(4)).all()
    with pytest.raises(ValueError, match="lacks column\\(s\\) memory_mb"):
        write_demand_csv(_table().drop(columns="memory_mb"), tmp_path / "broken.csv")


def test_the_plot_has_one_panel_per_slice_type(tmp_path: Path) -> None:
    one = plot_cores_vs_users(_table()[lambda t: t["slice_type"] == "embb"], 0.125, tmp_path / "one.png")
    two = plot_cores_vs_users(_table(), 0.125, tmp_path / "two.png")
    width_one, width_two = Image.open(one).size[0], Image.open(two).size[0]
    assert width_two > 1.8 * width_one  # a panel per slice type, side by side


def test_the_outputs_land_in_the_run_with_a_report_that_flags_the_cpu_quota(tmp_path: Path) -> None:
    inventory = load_inventory(write_local_inventory(tmp_path, NEVER_UP, "10.95.9"))
    spec = ProfileSpec(name="unit", slices=["embb", "urllc"], users=[1, 4])
    run = RunStore(tmp_path / "runs").create("profile-unit", {}, kind="profile")
    summary = write_profile_outputs(run, ProfileTarget(spec, inventory, {}), _table())
    assert pd.read_csv(run.path / "demand.csv").shape == (16, len(DEMAND_COLUMNS))
    assert (run.path / "plots" / "cores-vs-users.png").stat().st_size > 10_000
    report = (run.path / "report.md").read_text()
    assert "| vnf | slice_type | slice | users | host_cores | nominal_cores | memory_mb |" in report
    assert "1 step(s) ran the RAN emulator at 90 % or more of its cgroup quota" in report
    assert "embb x4" in report and "cpu_scale 0.125" in report
    assert summary["cpu_scale"] == 0.125 and len(summary["rows"]) == 16
