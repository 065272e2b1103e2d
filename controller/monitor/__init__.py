"""Watching a deployed testbed: per-slice QoS, allocations and usage read from Prometheus (``testbed top``)."""
