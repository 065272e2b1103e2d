"""CPU of a slice's RAN pod by in-place pod resize (Kubernetes ``InPlacePodVerticalScaling``).

Kubernetes 1.29-1.32 (feature gate on) take a strategic-merge patch of the pod's
``spec.containers[].resources``; 1.33 and later take the same patch on the pod's ``resize`` subresource.
The server's version picks which. The new limit counts as applied once the kubelet reports it in
``status.containerStatuses[].resources``; a resize the node marks Infeasible (or that does not finish in
time) is an :class:`ActuatorError`. Credentials stay in the kubeconfig and never appear in messages.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from controller.actuators.base import ActuatorError, CpuActuator, Interval
from core.errors import InputError
from core.retry import Attempts

RESIZE_SUBRESOURCE_SINCE = (1, 33)
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
REFUSED_RESIZE = frozenset({"Infeasible"})


def open_api(kubeconfig: Path, context: str | None = None) -> client.ApiClient:
    """An API client from a kubeconfig file (its credentials are used, never printed)."""
    if not kubeconfig.is_file():
        raise InputError(f"kubeconfig {kubeconfig} does not exist; copy the cluster's admin.conf there")
    try:
        return config.new_client_from_config(config_file=str(kubeconfig), context=context, persist_config=False)
    except (ConfigException, ValueError, TypeError) as exc:
        raise InputError(f"kubeconfig {kubeconfig}: {exc}".splitlines()[0]) from None


def parse_cpu(quantity: str | int | float) -> float:
    """Millicores of a Kubernetes CPU quantity ("1500m", "2", "0.5")."""
    text = str(quantity).strip()
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?)(m?)", text)
    if match is None:
        raise ActuatorError(f"unrecognized Kubernetes CPU quantity {text!r}")
    value = float(match[1])
    return value if match[2] else value * 1000


class PodResizeCpuActuator(CpuActuator):
    """The CPU limit (and request) of ``container`` in the one pod matching ``selector`` in ``namespace``."""

    def __init__(self, api: client.ApiClient, namespace: str, selector: str, container: str, bounds: Interval,
                 timeout_s: float = 60.0, poll_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace, self.selector, self.container = namespace, selector, container
        self.bounds = bounds
        self.timeout_s, self.poll_s, self._sleep = timeout_s, poll_s, sleep
        version = self._call("read the server version", client.VersionApi(api).get_code)
        major, minor = int(version.major), int(re.sub(r"\D.*", "", version.minor))
        self.use_resize_subresource = (major, minor) >= RESIZE_SUBRESOURCE_SINCE

    @property
    def where(self) -> str:
        return f"pod {self.namespace}/{{{self.selector}}} container {self.container}"

    def set_cpu(self, millicores: float) -> float:
        self.bounds.check(f"{self.where}: cpu_millicores", millicores)
        quantity = f"{round(millicores)}m"
        name = self._pod().metadata.name
        patch = {"spec": {"containers": [{"name": self.container, "resources": {
            "limits": {"cpu": quantity}, "requests": {"cpu": quantity}}}]}}
        core = self.core
        method = core.patch_namespaced_pod_resize if self.use_resize_subresource else core.patch_namespaced_pod
        self._call(f"resize {name}", method, name, self.namespace, patch, _content_type=STRATEGIC_MERGE)
        attempts = Attempts(self.timeout_s, self.poll_s, sleep=self._sleep)
        for _ in attempts:
            pod = self._pod()
            applied = self._applied(pod)
            if applied is not None and math.isclose(applied, round(millicores)):
                return applied
            state = _resize_state(pod)
            if state in REFUSED_RESIZE:
                raise ActuatorError(f"{self.where}: the node refused the resize to {quantity} ({state}); "
                                    "it does not fit the node's allocatable CPU")
        raise ActuatorError(f"{self.where}: resize to {quantity} not applied within {self.timeout_s:g} s "
                            f"(resize status {state or 'none'}, running limit {applied})")

    def read_cpu(self) -> float:
        applied = self._applied(self._pod())
        if applied is None:
            raise ActuatorError(f"{self.where}: the pod status reports no CPU limit for the container "
                                "(is InPlacePodVerticalScaling enabled on the cluster?)")
        return applied

    def _pod(self) -> Any:
        pods = self._call("list pods", self.core.list_namespaced_pod, self.namespace,
                          label_selector=self.selector).items
        running = [pod for pod in pods if pod.status and pod.status.phase == "Running"
                   and pod.metadata.deletion_timestamp is None]
        if len(running) != 1:
            raise ActuatorError(f"{self.where}: expected one running pod, found {len(running)}")
        return running[0]

    def _applied(self, pod: Any) -> float | None:
        """The CPU limit the kubelet reports as running for the container, in millicores."""
        for status in pod.status.container_statuses or []:
            if status.name == self.container and status.resources and status.resources.limits:
                cpu = status.resources.limits.get("cpu")
                return parse_cpu(cpu) if cpu is not None else None
        return None

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            raise ActuatorError(f"Kubernetes API: cannot {what} ({self.where}): HTTP {exc.status} "
                                f"{_status_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # unreachable: name the kind, never the request
            raise ActuatorError(f"Kubernetes API: cannot {what} ({self.where}): {type(exc).__name__}") from None


def _resize_state(pod: Any) -> str | None:
    """The pod's resize status: ``status.resize`` before 1.33, the PodResize* conditions after."""
    if pod.status.resize:
        return str(pod.status.resize)
    for condition in pod.status.conditions or []:
        if condition.type == "PodResizePending" and condition.status == "True":
            return "Infeasible" if condition.reason == "Infeasible" else "Deferred"
        if condition.type == "PodResizeInProgress" and condition.status == "True":
            return "InProgress"
    return None


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.reason))
    except ValueError:
        return str(exc.reason)
