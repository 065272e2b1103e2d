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
from helpers import run_slicebed, slicebed_argv, venv_environment
from local_testbed import deployed_local_testbed

from controller.campaign.export import journaled_table
from controller.campaign.journal import completed_points, incomplete_points
from controller.campaign.plan import plan_points
from controller.campaign.spec import load_campaign_spec
from controller.deploy.inventory import load_inventory
from core.retry import Attempts
from core.runstore import RunStore

PREFIX = "sbcmp-"
SUBNET = "10.94.0"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, exclusive_testbed: None) -> Iterator[Path]:
    """The inventory of an up testbed; brought down, and checked empty, at the end."""
    with deployed_local_testbed(tmp_path_factory.mktemp("campaign-local"), PREFIX, SUBNET, 19490) as up:
        yield up.inventory


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
    campaign = subprocess.Popen(slicebed_argv("campaign", "run", str(spec_path), runs=runs), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=venv_environment(OMP_NUM_THREADS="1"))
    for _ in Attempts(300, 0.2):  # wait for two measured points
        listed = RunStore(runs).list()
        if campaign.poll() is not None or (listed and len(completed_points(listed[0])) >= 2):
            break
    assert campaign.poll() is None, f"the campaign ended before the outage: {campaign.communicate()}"
    pid_file = load_inventory(deployed).state_dir / "pids" / "prometheus.pid"
    os.kill(int(pid_file.read_text(encoding="utf-8").split()[0]), signal.SIGTERM)  # the testbed's Prometheus
    time.sleep(6)  # at least one point's window without Prometheus
    restarted = run_slicebed("testbed", "up", "--inventory", str(deployed), runs=tmp_path / "up-runs")
    assert restarted.returncode == 0, restarted.stderr
    _, err = campaign.communicate(timeout=600)
    run = RunStore(runs).list()[0]
    outage_visible = campaign.returncode in (1, 2) and ("incomplete" in err or "campaign resume" in err)
    assert outage_visible, (campaign.returncode, err)  # the outage is reported, never silently absorbed
    for _ in range(3):
        if run.metadata()["status"] == "completed":
            break
        resumed = run_slicebed("campaign", "resume", run.id, runs=runs)
        assert resumed.returncode in (0, 1), resumed.stderr
    assert run.metadata()["status"] == "completed" and not incomplete_points(run)
    samples = journaled_table(run)
    expected = {point.id for point in plan_points(load_campaign_spec(spec_path))}
    assert set(samples["point"]) == expected
    assert samples.groupby("point").size().eq(4).all()
    assert not samples.duplicated(["point", "time"]).any()
