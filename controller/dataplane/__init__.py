"""The local testbed's eMBB data plane: app server, UPF, RAN emulator, UE sinks and the allocation exporter.

Each is a ``python -m controller.dataplane.<program>`` process (see docs/local-data-plane.md); the RAN is
an emulator (ciphering and per-UE scheduling on real packets), not a gNB.
"""
