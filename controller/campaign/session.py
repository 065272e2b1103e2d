"""A campaign run's life: created from a spec or reopened, then sessions that each measure what is pending.

A session holds the run's lock (a second live runner is refused), tells the testbed which session it is,
measures the pending points through :class:`SweepRunner`, exports the dataset and records the outcome. A
session that stops (disk full, testbed lost) or is interrupted leaves the run resumable.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress

from controller.campaign.export import export_dataset
from controller.campaign.journal import last_sample_time
from controller.campaign.plan import campaign_sweep, plan_points
from controller.campaign.runner import SweepOutcome, SweepRunner, prometheus_reader, stop_if_disk_full
from controller.campaign.spec import CampaignSpec, campaign_from_document
from controller.testbeds import open_testbed
from controller.testbeds.base import Testbed
from core.errors import InputError, RunStopped
from core.runstore import Run, RunStore, utc_now
from core.yamlfile import read_yaml

KIND = "campaign"
LOCK = "campaign.lock"


@dataclass(frozen=True)
class CampaignResult:
    """What a session left: the run's status (completed or incomplete), its points and the exported files."""

    run: Run
    status: str
    outcome: SweepOutcome
    files: list[Path]

    def as_dict(self) -> dict[str, Any]:
        return {"run": str(self.run.path), "status": self.status, "points": self.outcome.total,
                "completed": self.outcome.completed, "incomplete": len(self.outcome.incomplete),
                "files": [str(path) for path in self.files]}


def resume_command(run: Run) -> str:
    return f"slicebed campaign resume {run.id}"


def create_campaign_run(store: RunStore, spec: CampaignSpec, backend: str, spec_file: Path) -> Run:
    """A fresh campaign run of ``spec`` on ``backend``, with no session yet."""
    run = store.create(spec.name, spec.model_dump(mode="json"), kind=KIND)
    run.update_metadata(testbed=backend, spec_file=str(spec_file), seed=spec.seed, points_total=spec.points,
                        sessions=[])
    return run


def open_campaign_run(store: RunStore, run_id: str) -> tuple[Run, CampaignSpec]:
    """An existing campaign run and the spec it was started with (any other kind of run is refused)."""
    run = store.open(run_id)
    kind = run.metadata().get("kind")
    if kind != KIND:
        raise InputError(f"{run.path}: a {kind!r} run, not a campaign; only campaigns resume")
    spec_file = run.path / "spec.yaml"
    return run, campaign_from_document(read_yaml(spec_file), spec_file)


def is_completed(run: Run) -> bool:
    """Whether every point of the run was measured and its dataset exported."""
    return run.metadata().get("status") == "completed"


def campaign_testbed(spec: CampaignSpec, backend: str, source: Path) -> Testbed:
    """The campaign's testbed (the backends take any spec with ``testbed``, ``slices`` and ``seed``)."""
    try:
        return open_testbed(spec, backend)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def resumed_testbed(run: Run, spec: CampaignSpec) -> Testbed:
    """The testbed the run was started on."""
    return campaign_testbed(spec, run.metadata().get("testbed") or spec.testbed.backend, run.path / "spec.yaml")


@contextmanager
def campaign_lock(run: Run) -> Iterator[None]:
    """Hold the run's lock (released by the kernel even on kill -9), refusing a second live runner (campaigns and
    closed loops alike)."""
    with (run.path / LOCK).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunStopped(f"{run.path}: the {run.metadata().get('kind', 'run')} is still running in another process "
                             f"(pid {run.metadata().get('pid')}); wait for it or stop it first") from None
        yield


def begin_session(run: Run, testbed: Testbed) -> int:
    """Record a new session of ``run`` by this process and prepare the testbed for it; returns its number."""
    sessions = [*run.metadata().get("sessions", []), {"pid": os.getpid(), "started": utc_now()}]
    run.update_metadata(status="running", pid=os.getpid(), sessions=sessions, finished=None,
                        testbed_settings=testbed.settings())
    testbed.start_session(len(sessions), last_sample_time(run))
    return len(sessions)


def run_session(run: Run, spec: CampaignSpec, testbed: Testbed, progress: Progress,
                pace: float = 0.0) -> CampaignResult:
    """Measure the run's pending points under its lock, export the dataset and record the outcome.

    The testbed is closed afterwards. A stop, failure or interrupt is recorded in the run and raised.
    """
    with campaign_lock(run), testbed:
        begin_session(run, testbed)
        with run.finishing_on_error():
            reader = prometheus_reader(spec.prometheus) if spec.prometheus else None
            with reader if reader is not None else nullcontext():
                outcome = SweepRunner(campaign_sweep(spec), run, testbed, progress, resume_command(run), pace=pace,
                                      reader=reader).execute(plan_points(spec), f"campaign {spec.name}")
            try:
                files = export_dataset(run, run.path)
            except OSError as exc:
                raise stop_if_disk_full(exc, run, "exporting the dataset", resume_command(run)) from None
        status = "completed" if not outcome.incomplete else "incomplete"
        run.finish(status, points_completed=outcome.completed, points_incomplete=sorted(outcome.incomplete))
    return CampaignResult(run, status, outcome, files)
