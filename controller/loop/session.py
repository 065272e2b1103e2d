"""A closed loop's run: created from a spec, or reopened to resume with the very spec it started with.

A session holds the run's lock (a second live runner is refused), tells the testbed which session it is, runs
the loop (which skips whatever its journal says is done), writes the report and records the outcome. A session
that stops (disk full, testbed lost) or is interrupted leaves the run resumable with ``slicebed loop resume``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from controller.campaign.session import begin_session, campaign_lock
from controller.loop.runner import ClosedLoop, LoopInputs, LoopOutcome
from controller.loop_report import write_loop_report
from controller.spec import ExperimentSpec, load_spec, spec_document
from controller.testbeds.base import Testbed
from core.errors import InputError
from core.runstore import Run, RunStore

KIND = "loop"
MAX_DIFFERENCES = 3


@dataclass(frozen=True)
class LoopResult:
    """What a session left: the run, the loop's outcome, the report and the sweep points it could not measure."""

    run: Run
    outcome: LoopOutcome
    report: tuple[Path, Path]
    incomplete_points: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"run": str(self.run.path), "report": str(self.report[0]), "html": str(self.report[1]),
                "holds": self.outcome.holds, "rounds": self.outcome.rounds,
                "verdicts": {str(level + 1): verdict for level, verdict in sorted(self.outcome.verdicts.items())},
                "sweep_incomplete": len(self.incomplete_points)}


def create_loop_run(store: RunStore, spec: ExperimentSpec, backend: str, spec_file: Path) -> Run:
    """A fresh loop run of ``spec`` on ``backend``; the resolved spec is kept to check resumes against."""
    document = spec_document(spec)
    run = store.create(spec.name, document, kind=KIND)
    run.update_metadata(testbed=backend, spec_file=str(spec_file), spec=document, sessions=[])
    return run


def open_loop_run(store: RunStore, run_id: str, spec_file: Path | None = None) -> tuple[Run, ExperimentSpec]:
    """An existing loop run and the spec it started with.

    Raises:
        InputError: not a loop run, or its ``spec.yaml`` or ``spec_file`` differs from the spec the loop started
            with (the message names the first differences).
    """
    run = store.open(run_id)
    metadata = run.metadata()
    if metadata.get("kind") != KIND:
        raise InputError(f"{run.path}: a {metadata.get('kind')!r} run, not a closed loop; `slicebed loop resume` "
                         "resumes loops only")
    spec = load_spec(run.path / "spec.yaml")
    started = metadata.get("spec") or spec_document(spec)
    sources = [(run.path / "spec.yaml", spec)]
    if spec_file is not None:
        sources.append((spec_file, load_spec(spec_file)))
    for source, candidate in sources:
        differences = spec_differences(started, spec_document(candidate))
        if differences:
            raise InputError(f"{source}: differs from the spec the loop started with ({'; '.join(differences)}); "
                             "a resumed loop runs its own spec: start a new one with `slicebed loop run`")
    return run, spec


def spec_differences(started: Any, now: Any, key: str = "") -> list[str]:
    """Where two spec documents differ, as ``key: <then> when the loop started, <now> now`` (the first few)."""
    if isinstance(started, dict) and isinstance(now, dict):
        found: list[str] = []
        for name in sorted(set(started) | set(now)):
            found += spec_differences(started.get(name), now.get(name), f"{key}.{name}" if key else name)
        return found[:MAX_DIFFERENCES]
    if isinstance(started, list) and isinstance(now, list) and len(started) == len(now):
        found = []
        for index, (before, after) in enumerate(zip(started, now, strict=True)):
            found += spec_differences(before, after, f"{key}[{index}]")
        return found[:MAX_DIFFERENCES]
    return [] if started == now else [f"{key}: {started!r} when the loop started, {now!r} now"]


def run_loop_session(run: Run, spec: ExperimentSpec, inputs: LoopInputs, testbed: Testbed, progress: Progress,
                     device: torch.device | str = "cpu") -> LoopResult:
    """Run what the loop has left under the run's lock, write the report and record the outcome.

    The caller opens and closes the testbed. A stop, failure or interrupt is recorded in the run and raised.
    """
    backend = run.metadata().get("testbed") or spec.testbed.backend
    with campaign_lock(run):
        begin_session(run, testbed)
        with run.finishing_on_error():
            loop = ClosedLoop(spec, inputs, testbed, run, progress, device)
            outcome = loop.execute()
            report = write_loop_report(run, spec, outcome, loop.final_rounds, backend)
        run.finish("completed", holds=outcome.holds, rounds_run=outcome.rounds,
                   verdicts={str(level + 1): verdict for level, verdict in sorted(outcome.verdicts.items())},
                   sweep_points_incomplete=sorted(loop.incomplete_points))
    return LoopResult(run, outcome, report, loop.incomplete_points)


def is_completed(run: Run) -> bool:
    """Whether the loop ran to its end (every level passed, or its rounds ran out) and wrote its report."""
    return run.metadata().get("status") == "completed"
