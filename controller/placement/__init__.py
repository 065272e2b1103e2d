"""Slice placement over edge, regional and central tiers (SlicePilot, issue 14).

``spec`` reads the YAML, ``problem`` turns it into numbers, ``occupancy`` tracks what a placement uses,
``ilp`` solves eq. (6) exactly with CP-SAT, ``heuristics`` holds the paper's baselines, ``rl`` the double-DQN
agents, ``evaluation`` scores placements, ``reproduce``/``outputs`` rerun Sec. V and ``manifests`` renders
a placement as per-slice kustomize overlays for a lab.
"""
