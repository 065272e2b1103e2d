"""A campaign on the real local testbed with its Prometheus stopped and restarted mid-campaign.

The testbed gets its own prefix, management subnet and ports (from inventory/local.yml), so it never
collides with another testbed on this machine. Prometheus is stopped by the PID in the testbed's pid
file while points are being measured and brought back by `slicebed testbed up` (idempotent); the
campaign marks the points it could not measure incomplete or stops resumably, and resumes until the
dataset holds every planned point exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from local_testbed import SLICEBED, run_slicebed, write_local_inventory

from controller.campaign.export import journaled_table
from controller.campaign.journal import completed_points, incomplete_points
from controller.campaign.plan import plan_points
from controller.campaign.spec import load_campaign_spec
from controller.deploy.inventory import load_inventory
from controller.deploy.local_deployment import LocalDeployment as Deployment
from core.runstore import RunStore

PREFIX = "sbcmp-"
SUBNET = "10.94.0"

pytestmark = pytest.mark.slow


def write_inventory(directory: Path) -> Path:
    return write_local_inventory(directory, PREFIX, SUBNET, prometheus_port=19490)


def slicebed(*args: str, runs: Path, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    return run_slicebed(*args, runs=runs, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("campaign-local")
    inventory = write_inventory(directory)
    up = slicebed("testbed", "up", "--inventory", str(inventory), runs=directory / "runs")
    try:
        assert up.returncode == 0, up.stderr
        yield inventory
    finally:
        down = slicebed("testbed", "down", "--inventory", str(inventory), runs=directory / "runs")
        assert down.returncode == 0, down.stderr
        assert Deployment.open(inventory).leftovers() == []


def test_prometheus_stopped_and_restarted_mid_campaign_loses_and_duplicates_nothing(
        deployed: Path, tmp_path: Path) -> None:
    spec_path = tmp_path / "local.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "local-outage", "seed": 1,
        "testbed": {"backend": "local", "inventory": str(deployed)},
        "slices": [{"name": "embb", "bounds": {"cpu_millicores": [500, 4000], "bandwidth_mbps": [5, 40]}}],
        "grid": {"users": [1, 2], "bandwidth_mbps": [10, 20], "cpu_millicores": [2000, 4000]},
        "dwell_s": 4, "settle_s": 3,
    }), encoding="utf-8")
    runs = tmp_path / "runs"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    campaign = subprocess.Popen([SLICEBED, "--quiet", "--runs-dir", str(runs), "campaign", "run", str(spec_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and campaign.poll() is None:  # wait for two measured points
        listed = RunStore(runs).list()
        if listed and len(completed_points(listed[0])) >= 2:
            break
        time.sleep(0.2)
    assert campaign.poll() is None, f"the campaign ended before the outage: {campaign.communicate()}"
    pid_file = load_inventory(deployed).state_dir / "pids" / "prometheus.pid"
    os.kill(int(pid_file.read_text(encoding="utf-8").split()[0]), signal.SIGTERM)  # the testbed's Prometheus
    time.sleep(6)  # at least one point's window without Prometheus
    restarted = slicebed("testbed", "up", "--inventory", str(deployed), runs=tmp_path / "up-runs")
    assert restarted.returncode == 0, restarted.stderr
    _, err = campaign.communicate(timeout=600)
    run = RunStore(runs).list()[0]
    outage_visible = campaign.returncode in (1, 2) and ("incomplete" in err or "campaign resume" in err)
    assert outage_visible, (campaign.returncode, err)  # the outage is reported, never silently absorbed
    for _ in range(3):
        if run.metadata()["status"] == "completed":
            break
        resumed = slicebed("campaign", "resume", run.id, runs=runs)
        assert resumed.returncode in (0, 1), resumed.stderr
    assert run.metadata()["status"] == "completed" and not incomplete_points(run)
    samples = journaled_table(run)
    expected = {point.id for point in plan_points(load_campaign_spec(spec_path))}
    assert set(samples["point"]) == expected
    assert samples.groupby("point").size().eq(4).all()
    assert not samples.duplicated(["point", "time"]).any()
