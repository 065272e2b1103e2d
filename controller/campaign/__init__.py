"""Dataset-collection campaigns: a sweep grid run point by point on a testbed, crash-safe and resumable.

``spec`` validates campaign YAML, ``plan`` expands it into ordered points with stable ids, ``journal``
records completed points in the run's fsynced event log, ``runner`` drives the testbed, ``dataset``
assembles and exports what the journal vouches for, and ``schedule`` renders systemd and Kubernetes
schedules.
"""
