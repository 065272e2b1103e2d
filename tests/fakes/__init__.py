"""Contract fakes of servers that cannot run on a CI machine (ONOS, Kubernetes API, Nova, Neutron, Glance).

Each is written from the vendor's published API definition, serves real HTTP on a loopback port and checks
the requests it gets as strictly as the real server's schema does. Tests using them say ``fake`` in their names.
"""
