"""The three tiers every slicebed testbed spans, closest to the users first."""

from __future__ import annotations

from typing import Literal, get_args

Tier = Literal["edge", "regional", "central"]
TIERS: tuple[Tier, ...] = get_args(Tier)
