"""Campaigns on the replay twin: specs, runs, crash leftovers, faults, scheduling and ``runs`` commands.

Faults use real parts where this machine has them: a real Prometheus stopped and restarted, a real
full file system (a small tmpfs). Actuator failures and lost nodes come from a fake testbed wrapping
the replay twin (the test names say ``fake``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import REPO, run_cli
from prometheus_process import PrometheusProcess
from rich.progress import Progress

from collectors.dataset import grid_points, load_qos_csv
from controller.actuators.base import ActuatorError
from controller.campaign.export import journaled_table, read_parquet_metadata
from controller.campaign.journal import completed_points, incomplete_points
from controller.campaign.plan import Point, campaign_sweep, plan_points
from controller.campaign.runner import SweepRunner
from controller.campaign.schedule import cron_schedule, parse_every, systemd_units
from controller.campaign.session import campaign_lock
from controller.campaign.spec import load_campaign_spec
from controller.testbeds import open_testbed
from controller.testbeds.base import Allocation, Testbed
from core.errors import InputError, RunStopped
from core.runstore import Run, RunStore

SMOKE = REPO / "campaigns" / "replay-smoke.yaml"
GRID = REPO / "campaigns" / "microopt-grid.yaml"

pytestmark = pytest.mark.slow  # each CLI run loads the 1 MB MicroOpt CSV for the twin


def small_spec(tmp_path: Path, microopt_csv: Path, **changes: Any) -> Path:
    """A 2 x 2 x 2 = 8-point replay campaign (``changes`` replace top-level keys)."""
    document = {
        "name": "unit", "seed": 1,
        "testbed": {"backend": "replay", "replay": {"source": "dataset", "dataset": str(microopt_csv)}},
        "slices": [{"name": "embb", "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]}}],
        "grid": {"users": [1, 2], "bandwidth_mbps": [10, 20], "cpu_millicores": [1000, 2000]},
        "dwell_s": 15, "order": {"randomize": True, "seed": 5},
        **changes,
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def only_run(runs: Path) -> Run:
    listed = RunStore(runs).list()
    assert len(listed) == 1
    return listed[0]


def assert_exact_dataset(run: Run) -> pd.DataFrame:
    """The journaled samples hold every planned point exactly once, each with dwell_s rows."""
    spec = load_campaign_spec(run.path / "spec.yaml")
    samples = journaled_table(run)
    expected = {point.id for point in plan_points(spec)}
    per_point = samples.groupby("point").size()
    assert set(per_point.index) == expected
    assert (per_point == spec.dwell_s).all(), per_point[per_point != spec.dwell_s]
    assert not samples.duplicated(["point", "time"]).any()
    return samples


# --- specs and plans --------------------------------------------------------------------------------

def test_shipped_campaigns_validate_and_the_microopt_grid_has_320_points() -> None:
    grid = load_campaign_spec(GRID)
    points = plan_points(grid)
    assert grid.points == len(points) == 5 * 8 * 8
    assert {p.users for p in points} == {1, 2, 3, 4, 5}
    assert sorted({p.bandwidth_mbps for p in points}) == [5, 10, 15, 20, 25, 30, 35, 40]
    assert sorted({p.cpu_millicores for p in points}) == list(range(500, 4001, 500))
    assert len({p.id for p in points}) == len(points)
    smoke = load_campaign_spec(SMOKE)
    assert smoke.testbed.backend == "replay" and smoke.points == 24


def test_randomized_order_is_a_seeded_permutation(tmp_path: Path, microopt_csv: Path) -> None:
    ordered = plan_points(load_campaign_spec(small_spec(tmp_path, microopt_csv, order={"randomize": False})))
    first = plan_points(load_campaign_spec(small_spec(tmp_path, microopt_csv, order={"randomize": True, "seed": 9})))
    again = plan_points(load_campaign_spec(small_spec(tmp_path, microopt_csv, order={"randomize": True, "seed": 9})))
    assert [p.id for p in first] == [p.id for p in again]
    assert [p.id for p in first] != [p.id for p in ordered]
    assert sorted(p.id for p in first) == sorted(p.id for p in ordered)


# --- a whole campaign --------------------------------------------------------------------------------

def test_replay_smoke_campaign_writes_parquet_and_microopt_csv(tmp_path: Path,
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["--runs-dir", str(tmp_path), "campaign", "run", str(SMOKE), "--json"], capfd)
    assert code == 0, err
    result = json.loads(out)
    assert result["completed"] == result["points"] == 24
    run = only_run(tmp_path)
    assert run.metadata()["status"] == "completed"
    samples = assert_exact_dataset(run)
    csv = load_qos_csv(run.path / "dataset-embb.csv")
    assert len(csv) == len(samples) == 24 * 20
    assert len(grid_points(csv)) == 12 and (grid_points(csv)["samples"] == 40).all()  # 2 repetitions
    parquet = pd.read_parquet(run.path / "dataset.parquet")
    assert len(parquet) == len(samples)
    assert read_parquet_metadata(run.path / "dataset.parquet")["run_id"] == run.id


def test_resume_after_a_crash_between_part_and_journal_drops_the_orphan(
        tmp_path: Path, microopt_csv: Path, capfd: pytest.CaptureFixture[str]) -> None:
    spec_path = small_spec(tmp_path, microopt_csv)
    runs = tmp_path / "runs"
    assert run_cli(["--runs-dir", str(runs), "campaign", "run", str(spec_path)], capfd)[0] == 0
    run = only_run(runs)
    # rebuild the state a kill -9 leaves: the last point's part renamed into place, its journal line torn
    events = (run.path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    last_point = max(i for i, line in enumerate(events) if '"point_completed"' in line)
    torn = events[last_point][: len(events[last_point]) // 2]
    (run.path / "events.jsonl").write_text("\n".join(events[:last_point]) + "\n" + torn, encoding="utf-8")
    (run.path / "samples" / ".part-000099.parquet.tmp").write_bytes(b"PAR1 half written")
    run.update_metadata(status="running")
    assert len(completed_points(run)) == 7
    code, out, err = run_cli(["--runs-dir", str(runs), "campaign", "resume", run.id, "--json"], capfd)
    assert code == 0, err
    assert json.loads(out)["completed"] == 8
    assert_exact_dataset(run)
    assert len(list((run.path / "samples").iterdir())) == 8  # orphan and temp file gone
    assert any(event["event"] == "orphan_parts_removed" for event in run.events())
    assert len(load_qos_csv(run.path / "dataset-embb.csv")) == 8 * 15


def test_resuming_a_completed_run_changes_nothing(tmp_path: Path, microopt_csv: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    spec_path = small_spec(tmp_path, microopt_csv)
    assert run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "run", str(spec_path)], capfd)[0] == 0
    run = only_run(tmp_path / "runs")
    before = (run.path / "events.jsonl").read_bytes()
    code, out, _ = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "resume", str(run.path)], capfd)
    assert code == 0 and "nothing left to do" in out
    assert (run.path / "events.jsonl").read_bytes() == before


def test_a_second_runner_on_the_same_run_is_refused(tmp_path: Path, microopt_csv: Path,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    spec_path = small_spec(tmp_path, microopt_csv)
    assert run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "run", str(spec_path)], capfd)[0] == 0
    run = only_run(tmp_path / "runs")
    run.update_metadata(status="running")
    with campaign_lock(run):
        code, _, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "resume", run.id], capfd)
    assert code == 2 and "still running in another process" in err and len(err.splitlines()) == 1


# --- faults ------------------------------------------------------------------------------------------

def test_prometheus_down_marks_points_incomplete_and_resume_redoes_them(
        tmp_path: Path, microopt_csv: Path, prometheus: PrometheusProcess, capfd: pytest.CaptureFixture[str]) -> None:
    prometheus.exporter.gauge.labels(slice="embb").set(3.0)
    prometheus.wait_for_samples("slicebed_test_value", 2)
    spec_path = small_spec(tmp_path, microopt_csv, prometheus={
        "url": prometheus.url, "queries": {"value": "slicebed_test_value", "now": "time()"},
        "retry_attempts": 3, "retry_budget_s": 0.5, "timeout_s": 2})
    runs = tmp_path / "runs"
    prometheus.stop()
    code, _, err = run_cli(["--runs-dir", str(runs), "campaign", "run", str(spec_path)], capfd)
    assert code == 1
    assert "8 point(s) incomplete" in err and prometheus.url in err and "campaign resume" in err
    run = only_run(runs)
    assert run.metadata()["status"] == "incomplete"
    assert len(incomplete_points(run)) == 8 and not completed_points(run)
    assert not list((run.path / "samples").glob("*.parquet"))  # nothing silently empty either
    prometheus.start()
    code, _, err = run_cli(["--runs-dir", str(runs), "campaign", "resume", run.id], capfd)
    assert code == 0, err
    assert_exact_dataset(run)
    metrics = journaled_table(run, "metrics")
    assert set(metrics["query"]) == {"value", "now"} and set(metrics["point"]) == set(completed_points(run))
    assert (metrics.loc[metrics["query"] == "value", "value"] == 3.0).all()
    assert run.metadata()["status"] == "completed" and not incomplete_points(run)


class FakeFaultyTestbed(Testbed):
    """The replay twin with injected faults: an actuator that fails on one CPU value, or a node that vanishes."""

    def __init__(self, inner: Testbed, failing_cpu: float | None = None, lost_after: int | None = None,
                 short_at: int | None = None) -> None:
        self.inner = inner
        self.short_at = short_at
        self.name = inner.name
        self.failing_cpu = failing_cpu
        self.lost_after = lost_after
        self.collected = 0
        self.applied: list[tuple[str, Allocation]] = []

    def apply(self, slice_name: str, allocation: Allocation) -> Allocation:
        if allocation.cpu_millicores == self.failing_cpu:
            raise ActuatorError(f"cgroup cpu.cfs_quota_us read back 0 for {allocation.cpu_millicores:g} millicores")
        self.applied.append((slice_name, allocation))
        return self.inner.apply(slice_name, allocation)

    def set_traffic(self, slice_name: str, users: int) -> None:
        self.inner.set_traffic(slice_name, users)

    def collect(self, seconds: int) -> pd.DataFrame:
        if self.lost_after is not None and self.collected >= self.lost_after:
            raise ConnectionResetError(104, "Connection reset by peer (ssh to node ran-1)")
        self.collected += 1
        samples = self.inner.collect(seconds)
        return samples.iloc[:-3] if self.collected == self.short_at else samples  # a hole: 3 s never measured


def fake_faulty_run(tmp_path: Path, microopt_csv: Path, grid: dict[str, Any] | None = None,
                 **faults: Any) -> tuple[SweepRunner, FakeFaultyTestbed, list[Point]]:
    """A campaign run of the small spec (``grid`` replaces its grid) on the fake faulty testbed."""
    spec = load_campaign_spec(small_spec(tmp_path, microopt_csv, **({"grid": grid} if grid else {})))
    run = RunStore(tmp_path / "runs").create(spec.name, spec.model_dump(mode="json"), kind="campaign")
    run.update_metadata(testbed="replay", points_total=spec.points)
    testbed = FakeFaultyTestbed(open_testbed(spec, "replay"), **faults)  # type: ignore[arg-type]
    runner = SweepRunner(campaign_sweep(spec), run, testbed, Progress(disable=True),
                         f"slicebed campaign resume {run.id}")
    return runner, testbed, plan_points(spec)


def test_fake_testbed_actuator_failure_restores_peak_and_marks_the_point(
        tmp_path: Path, microopt_csv: Path, capfd: pytest.CaptureFixture[str]) -> None:
    runner, testbed, points = fake_faulty_run(tmp_path, microopt_csv, failing_cpu=2000.0)
    outcome = runner.execute(points)
    assert outcome.completed == 4 and len(outcome.incomplete) == 4  # every point at 2000 millicores
    assert all("actuator failure" in reason and "peak" in reason for reason in outcome.incomplete.values())
    restored = [event for event in runner.run.events() if event["event"] == "safe_allocation_restored"]
    assert len(restored) == 4
    assert restored[0]["allocation"] == {"embb": {"cpu_millicores": 4000.0, "bandwidth_mbps": 40.0}}
    peak = Allocation(4000.0, 40.0)
    assert sum(1 for _, allocation in testbed.applied if allocation == peak) == 4
    code, _, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "resume", runner.run.id], capfd)
    assert code == 0, err
    assert_exact_dataset(runner.run)


def test_fake_testbed_actuator_failure_that_peak_cannot_fix_stops_resumably(tmp_path: Path, microopt_csv: Path) -> None:
    grid = {"users": [1, 2], "bandwidth_mbps": [10, 20], "cpu_millicores": [1000, 4000]}
    runner, _, points = fake_faulty_run(tmp_path, microopt_csv, grid, failing_cpu=4000.0)  # 4000 is also the peak
    with pytest.raises(RunStopped, match="restoring the safe \\(peak\\) allocation of slice embb failed too"):
        runner.execute(points)
    assert any(event["event"] == "safe_allocation_failed" for event in runner.run.events())


def test_fake_testbed_node_loss_stops_with_one_line_and_the_run_resumes(
        tmp_path: Path, microopt_csv: Path, capfd: pytest.CaptureFixture[str]) -> None:
    runner, _, points = fake_faulty_run(tmp_path, microopt_csv, lost_after=3)
    with pytest.raises(RunStopped) as caught:
        runner.execute(points)
    message = str(caught.value)
    assert "Connection reset by peer" in message and f"campaign resume {runner.run.id}" in message
    assert "\n" not in message
    assert len(completed_points(runner.run)) == 3
    code, _, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "resume", runner.run.id], capfd)
    assert code == 0, err
    assert_exact_dataset(runner.run)


def test_fake_testbed_hole_in_the_samples_marks_the_point_incomplete(
        tmp_path: Path, microopt_csv: Path, capfd: pytest.CaptureFixture[str]) -> None:
    runner, _, points = fake_faulty_run(tmp_path, microopt_csv, short_at=2)
    outcome = runner.execute(points)
    assert outcome.completed == 7
    assert list(outcome.incomplete.values()) == ["slice embb: the testbed returned 12 of 15 one-second samples"]
    code, _, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "resume", runner.run.id], capfd)
    assert code == 0, err
    assert_exact_dataset(runner.run)


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A real 320 KiB tmpfs (root only), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_a_full_disk_stops_cleanly_without_corrupt_parquet_and_resume_finishes(
        small_disk: Path, microopt_csv: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    grid = {"users": [1, 2, 3], "bandwidth_mbps": [10, 20, 30, 40],
            "cpu_millicores": {"start": 500, "stop": 4000, "step": 500}}
    spec_path = small_spec(tmp_path, microopt_csv, grid=grid)  # 96 parts of >= 8 KiB: more than the disk holds
    code, _, err = run_cli(["--runs-dir", str(small_disk), "campaign", "run", str(spec_path)], capfd)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("slicebed: error: ")]
    assert len(errors) == 1 and "disk full" in errors[0] and err.splitlines()[-1] == errors[0], err
    assert "Traceback" not in err
    run = only_run(small_disk)
    done = completed_points(run)
    assert 0 < len(done) < 96
    parts = list((run.path / "samples").iterdir())
    assert all(not part.name.startswith(".") for part in parts)
    for part in parts:
        pq.read_table(part)  # every part left behind is whole
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    code, _, err = run_cli(["--runs-dir", str(small_disk), "campaign", "resume", run.id], capfd)
    assert code == 0, err
    assert_exact_dataset(run)


# --- scheduling --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("every", "seconds", "cron"), [
    ("15m", 900, "*/15 * * * *"), ("1m", 60, "* * * * *"), ("6h", 21_600, "0 */6 * * *"), ("1h", 3600, "0 * * * *"),
    ("1d", 86_400, "0 0 * * *"), ("1w", 604_800, "0 0 * * 0"), ("1h30m", 5400, None), ("7m", 420, None),
])
def test_every_parses_and_maps_to_cron_where_exact(every: str, seconds: int, cron: str | None) -> None:
    assert parse_every(every) == seconds
    if cron is None:
        with pytest.raises(InputError, match="a Kubernetes CronJob cannot repeat exactly"):
            cron_schedule(seconds)
    else:
        assert cron_schedule(seconds) == cron


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: make setup installs the Debian package systemd"
    units = tmp_path / "units"
    units.mkdir()
    # --no-enable: the test never enables a timer on the host that runs it
    code, out, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "schedule", str(SMOKE), "--every",
                              "6h", "--unit-dir", str(units), "--no-enable", "--json"], capfd)
    assert code == 0, err
    result = json.loads(out)
    assert result["enabled"] is False
    assert sorted(Path(path).name for path in result["units"]) == [
        "slicebed-campaign-replay-smoke.service", "slicebed-campaign-replay-smoke.timer"]
    service = (units / "slicebed-campaign-replay-smoke.service").read_text(encoding="utf-8")
    assert "campaign run" in service and str(SMOKE) in service and "Type=oneshot" in service
    assert "OnUnitActiveSec=6h" in (units / "slicebed-campaign-replay-smoke.timer").read_text(encoding="utf-8")
    verify = subprocess.run([analyze, "verify", *result["units"]], capture_output=True, text=True, check=False)
    problems = [line for line in verify.stderr.splitlines() if "slicebed-campaign" in line]
    assert verify.returncode == 0 and not problems, verify.stderr


def test_schedule_where_systemd_cannot_enable_writes_the_units_and_says_how(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no systemctl here: on any host, nothing gets enabled
    units = tmp_path / "units"
    units.mkdir()
    code, out, err = run_cli(["--runs-dir", str(tmp_path / "runs"), "campaign", "schedule", str(SMOKE), "--every",
                              "6h", "--unit-dir", str(units), "--json"], capfd)
    assert code == 1
    assert json.loads(out)["enabled"] is False
    assert sorted(path.name for path in units.iterdir()) == [
        "slicebed-campaign-replay-smoke.service", "slicebed-campaign-replay-smoke.timer"]
    assert err.strip() == ("slicebed: systemctl is not installed: wrote the units but did not enable them; on a "
                           "systemd host run `systemctl daemon-reload && systemctl enable --now "
                           "slicebed-campaign-replay-smoke.timer`")


def test_kubernetes_cronjob_validates_against_1_29(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    code, out, err = run_cli(["campaign", "schedule", str(SMOKE), "--every", "2h", "--kubernetes",
                          "--image", "registry.example/slicebed:0.1", "--namespace", "lab"], capfd)
    assert code == 0, err
    documents = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in documents] == ["ConfigMap", "CronJob"]
    for document in documents:
        kubernetes_validate.validate(document, "1.29", strict=True)
    cron_job = documents[1]
    assert cron_job["spec"]["schedule"] == "0 */2 * * *" and cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    assert yaml.safe_load(documents[0]["data"]["campaign.yaml"])["name"] == "replay-smoke"


def test_systemd_unit_names_are_sanitized() -> None:
    units = systemd_units("Lab.Grid_2", Path("/s.yaml"), 3600, Path(sys.executable), Path("/runs"), Path("/"))
    assert set(units) == {"slicebed-campaign-lab-grid-2.service", "slicebed-campaign-lab-grid-2.timer"}


# --- runs list / show / export ----------------------------------------------------------------------

def test_runs_list_show_and_export_with_a_chunked_prometheus_window(
        tmp_path: Path, microopt_csv: Path, prometheus: PrometheusProcess, capfd: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    assert run_cli(["--runs-dir", str(runs), "campaign", "run", str(small_spec(tmp_path, microopt_csv))], capfd)[0] == 0
    run = only_run(runs)
    code, out, _ = run_cli(["--runs-dir", str(runs), "runs", "list", "--json"], capfd)
    assert code == 0 and json.loads(out)["runs"][0]["points"] == "8/8"
    code, out, _ = run_cli(["--runs-dir", str(runs), "runs", "show", run.id, "--json"], capfd)
    shown = json.loads(out)
    assert shown["status"] == "completed" and shown["points_completed"] == 8 and "dataset.parquet" in shown["files"]
    out_dir = tmp_path / "export"
    code, out, err = run_cli(["--runs-dir", str(runs), "runs", "export", run.id, "--out", str(out_dir),
                          "--prometheus-url", prometheus.url, "--query", "clock=time()",
                          "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-02T00:00:00Z"], capfd)
    assert code == 0, err
    clock = pd.read_parquet(out_dir / "prometheus-clock.parquet")
    assert len(clock) == 86_401 and clock["time"].is_unique and clock["time"].is_monotonic_increasing
    details = read_parquet_metadata(out_dir / "prometheus-clock.parquet")
    assert details["run_id"] == run.id and details["query"] == "time()"
    assert len(pd.read_csv(out_dir / "prometheus-clock.csv")) == 86_401
    assert len(load_qos_csv(out_dir / "dataset-embb.csv")) == 8 * 15
    manifest = json.loads((out_dir / "export.json").read_text(encoding="utf-8"))
    assert manifest["run_id"] == run.id and manifest["rows"] == 8 * 15
