"""The closed loop: sweep, retrain, optimize, apply and validate, round after round until every level holds.

``runner`` runs the rounds; ``design`` chooses where to measure (the first round's design, the targeted sweep of
a failed level); ``training`` retrains each round's models on everything measured; ``validation`` applies a level's
allocation, runs its traffic and judges the window; ``evidence`` measures degradation (eq. 1) and tests it against
a bound; ``guard`` falls back to the safe allocation during a window that starves a slice; ``journal`` records
every decision and measurement so a killed loop resumes; ``session`` creates, reopens and runs loop runs.
"""
