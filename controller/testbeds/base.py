"""The testbed-backend contract: apply an allocation, set slice traffic, read QoS samples.

Backends: ``replay`` (a digital twin, here), ``local`` (network namespaces on this host) and ``lab``
(real nodes). The closed loop and campaigns only talk to this interface. A backend is a context
manager: leaving the ``with`` block releases everything it started.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import pandas as pd

from core.errors import InputError, SlicebedError

SAMPLE_COLUMNS: tuple[str, ...] = ("time", "slice", "total_bandwidth_usage", "cpu", "bw", "n_users", "qos")
"""A QoS sample: the MicroOpt columns plus the slice it belongs to."""


class TestbedUnavailable(SlicebedError):
    """The testbed is not up, or one of its programs does not answer."""

    __test__ = False  # an error, not a pytest test class despite its name


@dataclass(frozen=True)
class Allocation:
    """Resources given to one slice."""

    cpu_millicores: float
    bandwidth_mbps: float

    def check_within(self, lower: tuple[float, float], upper: tuple[float, float], slice_name: str) -> None:
        """Raise :class:`InputError` unless both resources lie within [lower, upper]."""
        for name, value, low, high in (
            ("cpu_millicores", self.cpu_millicores, lower[0], upper[0]),
            ("bandwidth_mbps", self.bandwidth_mbps, lower[1], upper[1]),
        ):
            if not low <= value <= high:
                raise InputError(f"slice {slice_name}: {name} {value:g} is outside the allowed [{low:g}, {high:g}]")


class Testbed(ABC):
    """A place where slices run: resources can be set, traffic driven and QoS measured."""

    name: str

    @abstractmethod
    def apply(self, slice_name: str, allocation: Allocation) -> Allocation:
        """Give ``allocation`` to the slice; returns the allocation read back from the testbed."""

    @abstractmethod
    def set_traffic(self, slice_name: str, users: int) -> None:
        """Make ``users`` users active in the slice from now on."""

    @abstractmethod
    def collect(self, seconds: int) -> pd.DataFrame:
        """Run for ``seconds`` seconds and return one sample per slice per second (``SAMPLE_COLUMNS``)."""

    def settings(self) -> dict[str, Any]:
        """What a report must state to compare this testbed's figures with another's (units, scales); none by
        default."""
        return {}

    def start_session(self, session: int, last_sample: datetime | None) -> None:  # noqa: B027  (optional hook)
        """Prepare session ``session`` (1, 2, ... per run) of a run whose last recorded sample is ``last_sample``.

        A resumed run measures again after a crash or a stop. Backends on the wall clock have nothing to do
        (the default); the replay twin goes on after ``last_sample`` with draws of the session's own.
        """

    def close(self) -> None:  # noqa: B027  (an optional hook: most backends have nothing to release)
        """Release what the backend started. The default has nothing to release."""

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
