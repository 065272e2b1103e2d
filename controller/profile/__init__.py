"""`slicebed profile`: each slice type's VNFs' CPU and memory against its users, measured on the local testbed.

The result is the demand table SlicePilot's placement needs (VNF x slice type x users -> cores, memory):
``spec`` validates the profile YAML, ``usage`` reads a VNF's CPU time and memory, ``runner`` drives the steps,
``outputs`` writes the CSV, the plot and the report.
"""
