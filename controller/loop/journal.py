"""The closed loop's journal: what each round decided and measured, in the run's fsynced event log.

Besides the sweep points (journaled by the campaign's sweep runner), the loop records, in this order:

- ``sweep_planned`` (round, reason, points): a round's points before any is measured, so a resumed loop measures
  the same ones (a targeted sweep depends on the models of the round before);
- ``model_trained`` (round, slice, directory): once the checkpoint is on disk;
- ``allocation_chosen`` (round, level, per-slice allocation and expected degradation);
- ``level_validated`` (round, level, parts): once the window's samples and result rows are durable Parquet
  parts (written, fsynced, renamed), like a sweep point;
- ``round_finished`` (round, verdicts).

A resumed loop reads these back and redoes only what has no entry: a point, a validation window and a training
count once. Parts of a validation cut short (written, never journaled) are deleted first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from controller.campaign.plan import Point
from core.runstore import Run

VALIDATION_TABLE = "validation"
RESULTS_TABLE = "results"
PLANNED = "sweep_planned"
TRAINED = "model_trained"
CHOSEN = "allocation_chosen"
VALIDATED = "level_validated"
ROUND_FINISHED = "round_finished"

Step = tuple[int, int]
"""(round, level)."""


@dataclass
class LoopJournal:
    """The loop's decisions and measurements so far, read from ``run``'s event log and kept up to date."""

    run: Run
    plans: dict[int, list[Point]] = field(default_factory=dict)
    models: dict[tuple[int, str], Path] = field(default_factory=dict)
    allocations: dict[Step, dict[str, Any]] = field(default_factory=dict)
    validations: dict[Step, dict[str, Any]] = field(default_factory=dict)
    finished_rounds: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, run: Run) -> LoopJournal:
        """The journal as the event log has it (the first entry of each step wins)."""
        journal = cls(run)
        for event in run.events():
            kind = event.get("event")
            if kind == PLANNED:
                journal.plans.setdefault(event["round"], [Point(**point) for point in event["points"]])
            elif kind == TRAINED and "directory" in event:
                journal.models.setdefault((event["round"], event["slice"]), run.path / event["directory"])
            elif kind == CHOSEN:
                journal.allocations.setdefault((event["round"], event["level"]), event)
            elif kind == VALIDATED and "parts" in event:
                journal.validations.setdefault((event["round"], event["level"]), event)
            elif kind == ROUND_FINISHED:
                verdicts = {int(level): verdict for level, verdict in event["verdicts"].items()}
                journal.finished_rounds.setdefault(event["round"], {**event, "verdicts": verdicts})
        return journal

    def record_plan(self, round_index: int, reason: str, points: list[Point]) -> None:
        self.run.log_event(PLANNED, round=round_index, reason=reason, points=[asdict(point) for point in points])
        self.plans[round_index] = points

    def record_model(self, round_index: int, slice_name: str, directory: Path, **details: Any) -> None:
        self.run.log_event(TRAINED, round=round_index, slice=slice_name,
                           directory=str(directory.relative_to(self.run.path)), **details)
        self.models[(round_index, slice_name)] = directory

    def record_allocation(self, round_index: int, level: int, **details: Any) -> dict[str, Any]:
        self.run.log_event(CHOSEN, round=round_index, level=level, **details)
        entry = {"round": round_index, "level": level, **details}
        self.allocations[(round_index, level)] = entry
        return entry

    def record_validation(self, round_index: int, level: int, samples: pd.DataFrame, results: pd.DataFrame,
                          **details: Any) -> None:
        """Write the window's samples and result rows as parts, then journal the window (it counts once)."""
        parts = [self.run.append_samples(samples, VALIDATION_TABLE), self.run.append_samples(results, RESULTS_TABLE)]
        relative = [str(part.relative_to(self.run.path)) for part in parts]
        self.run.log_event(VALIDATED, round=round_index, level=level, parts=relative, **details)
        self.validations[(round_index, level)] = {"round": round_index, "level": level, "parts": relative, **details}

    def record_round(self, round_index: int, verdicts: dict[int, str]) -> None:
        self.run.log_event(ROUND_FINISHED, round=round_index, verdicts={str(k): v for k, v in verdicts.items()})
        self.finished_rounds[round_index] = {"round": round_index, "verdicts": verdicts}

    def table(self, table: str, before_round: int | None = None) -> pd.DataFrame:
        """The journaled parts of ``table`` (validation samples or results), round by round, level by level."""
        index = 0 if table == VALIDATION_TABLE else 1
        frames = [pd.read_parquet(self.run.path / entry["parts"][index])
                  for step, entry in sorted(self.validations.items())
                  if before_round is None or step[0] < before_round]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def remove_orphans(self) -> list[Path]:
        """Delete validation and result parts no journal entry vouches for (a window cut short), and temp files."""
        kept = {self.run.path / part for entry in self.validations.values() for part in entry["parts"]}
        removed = []
        for table in (VALIDATION_TABLE, RESULTS_TABLE):
            directory = self.run.path / table
            if directory.is_dir():
                for path in sorted(directory.iterdir()):
                    if path.name.startswith(".") or (path.suffix == ".parquet" and path not in kept):
                        path.unlink()
                        removed.append(path)
        return removed
