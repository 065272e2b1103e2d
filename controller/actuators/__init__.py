"""Actuators: the parts of a testbed that give a slice its CPU and transport bandwidth.

Every actuator checks bounds before touching anything and reads the value back after setting it.
Local and lab actuators share the same classes; only the :class:`~core.commands.CommandRunner`
differs (a local subprocess, or SSH to a lab node).
"""
