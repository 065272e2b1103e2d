"""The actuators of a lab's slices, as its inventory's ``lab_backend`` section chooses them.

CPU: the gNB's cgroup over SSH (``cgroup``) or in-place pod resize (``pod_resize``). Bandwidth: an OpenFlow meter
installed through ONOS on the transport port the slice's GTP-U downlink leaves by (``onos_meter``, the lab's way:
tunnel ports have no QoS), or the max-rate of the slice's linux-htb queue over SSH on a port that is a real NIC
(``ovs_queue``). The ONOS device and port are found by name, queue ids in OVSDB.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.actuators.base import ActuatorError, BandwidthActuator, CpuActuator, Interval
from controller.actuators.cgroup import CgroupCpuActuator
from controller.actuators.kubernetes import PodResizeCpuActuator, open_api
from controller.actuators.onos import OnosClient, OnosMeterActuator, SliceFlow
from controller.actuators.ovs import OvsQueueActuator
from controller.deploy.inventory.lab import BACKEND_SECTION, LabInventory
from core.commands import CommandRunner
from core.errors import InputError

RunnerFactory = Callable[[str], CommandRunner]
"""A node address -> the command runner on that node."""


def onos_client(inventory: LabInventory) -> OnosClient:
    """The ONOS REST client of the lab (credentials from the environment variables the inventory names)."""
    variables = inventory.variables
    url = inventory.settings.onos_url or f"http://{inventory.first_host('sdn_controller')}:8181"
    return OnosClient.from_env(url, variables.onos_user_env, variables.onos_password_env)


def cpu_actuator(inventory: LabInventory, slice_name: str, bounds: Interval, runner_for: RunnerFactory) -> CpuActuator:
    """The slice gNB's CPU: its pod resized in place, or its cgroup on the edge node."""
    settings = inventory.settings
    if settings.cpu == "pod_resize":
        kubernetes = settings.kubernetes
        kubeconfig = kubernetes.kubeconfig.expanduser() if kubernetes.kubeconfig else inventory.kubeconfig
        return PodResizeCpuActuator(open_api(kubeconfig, kubernetes.context),
                                    kubernetes.namespace, kubernetes.selector.replace("{slice}", slice_name),
                                    kubernetes.container, bounds)
    cgroup = settings.cgroup.replace("{slice}", slice_name)
    actuator = CgroupCpuActuator(runner_for(inventory.first_host("edge")), cgroup, bounds)
    if not actuator.exists():
        raise ActuatorError(f"{actuator.runner.node}: the gNB cgroup {actuator.path} does not exist; is the "
                            f"slice's gNB running (or all.vars.{BACKEND_SECTION}.cgroup wrong)?")
    return actuator


def bandwidth_actuator(inventory: LabInventory, slice_name: str, bounds: Interval, runner_for: RunnerFactory,
                       onos: OnosClient | None) -> BandwidthActuator:
    """With ``onos``: the slice's ONOS meter on the configured port; else its OvS queue on the tier's port."""
    ovs = inventory.settings.ovs
    if onos is None:
        return OvsQueueActuator(runner_for(inventory.first_host(ovs.tier)), ovs.vsctl, ovs.port, slice_name, bounds)
    gnb_n3_ip = inventory.gnb_n3_ip(slice_name)
    if not gnb_n3_ip:
        raise InputError(f"{inventory.path}: slice {slice_name} has no gnb_n3_ip (its meter's flow matches it)")
    return OnosMeterActuator(onos, SliceFlow(f"{gnb_n3_ip}/32", ovs.port), bounds)
