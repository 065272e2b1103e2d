"""The emulated network under test: the local testbed's app server, UPF, RAN emulator, UE sinks, exporter, probe.

Each is a ``python -m dataplane.<program>`` process (see docs/local-data-plane.md); the RAN is an emulator
(ciphering and per-UE scheduling on real packets), not a gNB. It imports only ``core`` and its own modules:
the controller drives it from outside, over its control endpoints.
"""
