"""The closed loop: sweep, retrain, optimize, apply and validate, round after round until every level holds.

``runner`` runs the rounds, ``design`` chooses where to measure (the first round's design, the targeted sweep of
a failed level), ``evidence`` measures degradation (eq. 1) and tests it against a bound, ``guard`` falls back to the
safe allocation during a window that starves a slice, ``journal`` records every decision and measurement so a
killed loop resumes, and ``session`` creates, reopens and runs loop runs.
"""
