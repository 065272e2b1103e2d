"""Transport bandwidth of a slice in Open vSwitch: an OpenFlow 1.3 meter, or a linux-htb queue (labs).

Both work in the userspace (netdev) datapath. Each reads the rate back from where it takes effect:
the meter from the switch (``dump-meters``), the queue from the kernel's htb class on the port.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from controller.actuators.base import ActuatorError, BandwidthActuator, Interval
from core.commands import CommandError, CommandRunner

_METER_RATE = re.compile(r"\brate=(\d+)")
_METER_BYTES_IN = re.compile(r"\bbyte_in_count:(\d+)")
_BAND_DROPPED_BYTES = re.compile(r"\b\d+: packet_count:\d+ byte_count:(\d+)")
_TC_RATE = re.compile(r"\bceil (\d+(?:\.\d+)?)([KMG]?)bit\b")
_UNITS = {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3}
METER_BURST_FRACTION = 0.25
SHARED_METER_ID = 1000
"""The local testbed's shared transport meter (every packet towards edge passes it after its slice's meter)."""
"""A meter's burst in kbit per kbps of rate. With a quarter second of burst TCP reaches the rate through the
userspace meter (measured: docs/local-testbed-deploy.md); the testbed's playbook creates its meters with the same."""


class OvsMeter:
    """OpenFlow 1.3 meter ``meter_id`` (a ``kbps`` meter with one drop band) of a switch: its rate and its traffic.

    ``switch`` is what ovs-ofctl connects to: a bridge name, or ``unix:RUNDIR/BRIDGE.mgmt`` for a switch
    whose sockets are outside the default run directory (the local testbed's own ovs-vswitchd).
    """

    def __init__(self, runner: CommandRunner, switch: str, meter_id: int) -> None:
        if meter_id < 1:
            raise ValueError(f"meter ids start at 1, got {meter_id}")
        self.runner = runner
        self.switch = switch
        self.meter_id = meter_id

    def _ofctl(self, *args: str) -> str:
        return self.runner.output(["ovs-ofctl", "-O", "OpenFlow13", *args])

    def rate_kbps(self) -> int | None:
        """The drop band's rate, or None when the switch has no such meter."""
        match = _METER_RATE.search(self._ofctl("dump-meters", self.switch, f"meter={self.meter_id}"))
        return int(match.group(1)) if match else None

    def set_rate_kbps(self, kbps: int) -> None:
        """Create the meter, or change its rate, with a burst of ``METER_BURST_FRACTION`` of the rate."""
        spec = (f"meter={self.meter_id},kbps,burst,band=type=drop,rate={kbps},"
                f"burst_size={max(1, round(kbps * METER_BURST_FRACTION))}")
        self._ofctl("mod-meter" if self.rate_kbps() is not None else "add-meter", self.switch, spec)

    def passed_bytes(self) -> int:
        """Bytes that entered the meter minus the bytes its drop band discarded, since it was created."""
        stats = self._ofctl("meter-stats", self.switch, f"meter={self.meter_id}")
        entered = _METER_BYTES_IN.search(stats)
        if entered is None:
            raise CommandError(f"{self.runner.node}: no statistics for meter {self.meter_id} on {self.switch}")
        return int(entered.group(1)) - sum(int(dropped) for dropped in _BAND_DROPPED_BYTES.findall(stats))


class OvsMeterActuator(BandwidthActuator):
    """The drop-band rate of an :class:`OvsMeter` on the flows of one slice, read back from the switch.

    ``scale`` maps the slice's nominal Mbps to the switch's rate (the local testbed's ``rate_scale``).
    """

    def __init__(self, runner: CommandRunner, switch: str, meter_id: int, bounds: Interval, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.meter = OvsMeter(runner, switch, meter_id)
        self.bounds = bounds
        self.scale = scale

    def set_bandwidth(self, mbps: float) -> float:
        meter = self.meter
        self.bounds.check(f"meter {meter.meter_id} on {meter.switch}: bandwidth_mbps", mbps)
        kbps = round(mbps * self.scale * 1000)
        meter.set_rate_kbps(kbps)
        effective = self.read_bandwidth()
        if round(effective * self.scale * 1000) != kbps:
            raise ActuatorError(f"meter {meter.meter_id} on {meter.switch}: set {kbps} kbps, the switch reports "
                                f"{effective * self.scale * 1000:g} kbps")
        return effective

    def read_bandwidth(self) -> float:
        """Nominal Mbps of the meter's rate (divided by ``scale``)."""
        kbps = self.meter.rate_kbps()
        if kbps is None:
            raise ActuatorError(f"meter {self.meter.meter_id} does not exist on {self.meter.switch}")
        return kbps / 1000 / self.scale


class OvsQueueActuator(BandwidthActuator):
    """The ``max-rate`` of the linux-htb queue of one slice on an OvS port.

    The queue is found in OVSDB: the port's QoS row, then the queue whose ``external_ids:slicebed-slice``
    names the slice (so labs need not agree on queue numbers). ``vsctl`` is the ovs-vsctl command line,
    e.g. ``["ovs-vsctl", "--db=unix:/run/x/db.sock"]``. The rate is read back from the kernel's htb class
    on the port (class ``1:<queue id + 1>``, as OvS numbers them).
    """

    def __init__(self, runner: CommandRunner, vsctl: Sequence[str], port: str, slice_name: str,
                 bounds: Interval) -> None:
        self.runner = runner
        self.vsctl = list(vsctl)
        self.port = port
        self.slice_name = slice_name
        self.bounds = bounds
        self.queue_id, self.queue_uuid = self._discover()

    def _get(self, *args: str) -> str:
        return self.runner.output([*self.vsctl, "get", *args]).strip()

    def _discover(self) -> tuple[int, str]:
        qos = self._get("port", self.port, "qos")
        if qos in ("[]", ""):
            raise ActuatorError(f"OvS port {self.port} has no QoS; create a linux-htb QoS with one queue per slice")
        queues = dict(item.split("=") for item in self._get("qos", qos, "queues").strip("{}").split(", ") if item)
        for queue_id, uuid in queues.items():
            owner = self.runner.run([*self.vsctl, "--if-exists", "get", "queue", uuid, "external_ids:slicebed-slice"])
            if owner.stdout.strip().strip('"') == self.slice_name:
                return int(queue_id), uuid
        raise ActuatorError(f"OvS port {self.port}: no queue has external_ids:slicebed-slice={self.slice_name} "
                            f"(queues {', '.join(sorted(queues)) or 'none'}); tag the slice's queue")

    def set_bandwidth(self, mbps: float) -> float:
        self.bounds.check(f"queue {self.queue_id} on {self.port}: bandwidth_mbps", mbps)
        self.runner.output([*self.vsctl, "set", "queue", self.queue_uuid, f"other_config:max-rate={round(mbps * 1e6)}"])
        effective = self.read_bandwidth()
        if abs(effective - mbps) > max(0.01 * mbps, 0.01):
            raise ActuatorError(f"queue {self.queue_id} on {self.port}: set {mbps:g} Mbps, the kernel's htb class "
                                f"reports {effective:g} Mbps")
        return effective

    def read_bandwidth(self) -> float:
        """The ceil of the queue's htb class in Mbps (tc rounds to its display units)."""
        classid = f"1:{self.queue_id + 1:x}"
        output = self.runner.output(["tc", "class", "show", "dev", self.port, "classid", classid])
        match = _TC_RATE.search(output)
        if not match:
            raise ActuatorError(f"{self.port}: no htb class {classid} in the kernel; is the QoS type linux-htb?")
        return float(match.group(1)) * _UNITS[match.group(2)]
