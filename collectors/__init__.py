"""Observation: dataset loaders, the run store and (later) Prometheus queries and exporters.

The lowest layer of slicebed: it imports neither ``analysis`` nor ``controller``.
"""
