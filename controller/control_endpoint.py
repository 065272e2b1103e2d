"""The JSON control endpoints of slicebed's traffic programs (an app server's ``/control``, the local exporter's
``/allocation``): one client for the testbed backends, `testbed place` and `testbed check`, whose errors name the
endpoint and what went wrong; each caller adds its own hint."""

from __future__ import annotations

from typing import Any

import requests


class EndpointError(Exception):
    """A control endpoint did not answer, refused the request, or answered something other than JSON."""


def call_endpoint(url: str, body: dict[str, Any] | None = None, *, timeout_s: float = 5.0,
                  session: requests.Session | None = None) -> dict[str, Any]:
    """GET ``url``, or POST ``body`` to it as JSON; its JSON answer (through ``session`` when given)."""
    request = session.request if session is not None else requests.request
    try:
        response = request("POST" if body is not None else "GET", url, json=body, timeout=timeout_s)
    except requests.RequestException as exc:
        raise EndpointError(f"{url} does not answer ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise EndpointError(f"{url} refused {body}: HTTP {response.status_code} {response.text.strip()}")
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        raise EndpointError(f"{url} answered {response.text[:80]!r}, not JSON") from None
    return answer
