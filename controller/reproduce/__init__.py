"""``slicebed reproduce microopt``: the MicroOpt paper's comparison (Sec. VI-B to VI-D) on a user's model.

``cases`` defines the experiments and budgets, ``runner`` solves every case with every method on one
model, ``summaries`` turns the results into the paper's tables, ``plots`` into its figures, and
``outputs`` writes them into a run directory with a report.
"""
