"""The actuator contract shared by the local and lab testbeds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from core.commands import CommandError
from core.errors import InputError


class ActuatorError(CommandError):
    """An allocation could not be applied or did not take effect (read-back mismatch, command failure)."""


@dataclass(frozen=True)
class Interval:
    """Inclusive range an actuator accepts."""

    low: float
    high: float

    def check(self, what: str, value: float) -> None:
        """Raise :class:`InputError` naming ``what`` unless ``low <= value <= high``."""
        if not self.low <= value <= self.high:
            raise InputError(f"{what} {value:g} is outside the allowed [{self.low:g}, {self.high:g}]")


class CpuActuator(ABC):
    """Sets the CPU of one slice's RAN (or other CPU-bound function)."""

    bounds: Interval

    @abstractmethod
    def set_cpu(self, millicores: float) -> float:
        """Interval-check, apply ``millicores`` and return the value read back from the system."""

    @abstractmethod
    def read_cpu(self) -> float:
        """The CPU limit currently in effect, in millicores."""


class BandwidthActuator(ABC):
    """Sets the transport bandwidth of one slice."""

    bounds: Interval

    @abstractmethod
    def set_bandwidth(self, mbps: float) -> float:
        """Interval-check, apply ``mbps`` and return the rate read back from the switch or controller."""

    @abstractmethod
    def read_bandwidth(self) -> float:
        """The rate currently in effect, in Mbps."""
