"""Observation: the MicroOpt and Milan dataset loaders and the Prometheus reader.

Imports only ``core``; never ``analysis`` or ``controller``.
"""
