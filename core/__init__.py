"""Core infrastructure shared by every layer: errors, YAML reading, the run store, provenance, commands.

The lowest layer of slicebed: it imports no other slicebed package.
"""
