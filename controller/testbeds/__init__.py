"""Testbed backends behind one interface (:class:`controller.testbeds.base.Testbed`)."""

from __future__ import annotations

from collectors.dataset import load_qos_csv
from controller.actuators.base import Interval
from controller.spec import ExperimentSpec
from controller.testbeds.base import Testbed
from controller.testbeds.lab import open_lab_testbed
from controller.testbeds.local import open_local_testbed
from controller.testbeds.replay import DatasetQosSource, QosSource, ReplayTestbed
from core.errors import InputError
from core.slice_types import QosKind

BACKENDS = ("replay", "local", "lab")


def open_testbed(spec: ExperimentSpec, backend: str | None = None) -> Testbed:
    """The testbed an experiment runs on: ``backend`` if given, else the spec's."""
    backend = backend or spec.testbed.backend
    slices = [s.name for s in spec.slices]
    qos: dict[str, QosKind] = {s.name: getattr(s, "qos", "throughput_mbps") for s in spec.slices}  # campaigns
    judged_otherwise = [f"{name} ({kind})" for name, kind in qos.items() if kind != "throughput_mbps"]
    if backend != "local" and judged_otherwise:
        raise InputError(f"the {backend} testbed measures per-user throughput only; slice(s) "
                         f"{', '.join(judged_otherwise)} need the local testbed")
    if backend == "replay":
        replay = spec.testbed.replay
        if replay is None:
            raise InputError("the replay testbed needs a 'testbed.replay' section (source, model or dataset)")
        source: QosSource
        if replay.source == "model":
            assert replay.model is not None
            # imported here: torch is slow to import, and replaying a dataset does not need it
            from analysis.slice_model import load_model
            from controller.testbeds.model_source import ModelQosSource
            source = ModelQosSource(load_model(replay.model))
        else:
            assert replay.dataset is not None
            source = DatasetQosSource(load_qos_csv(replay.dataset, settle_s=replay.settle_s))
        return ReplayTestbed(source, slices, seed=spec.seed)
    if backend == "local":
        return open_local_testbed(spec.testbed.inventory, {
            s.name: (Interval(*s.bounds.cpu_millicores), Interval(*s.bounds.bandwidth_mbps)) for s in spec.slices},
            qos)
    if backend == "lab":
        return open_lab_testbed(spec.testbed.inventory, {
            s.name: (Interval(*s.bounds.cpu_millicores), Interval(*s.bounds.bandwidth_mbps)) for s in spec.slices})
    raise InputError(f"unknown testbed backend {backend!r}; choose one of {', '.join(BACKENDS)}")
