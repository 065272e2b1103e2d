"""Settings of the MicroOpt and grid optimizers and the default cost weights, without importing torch.

Experiment specs validate against these; the solvers themselves (``controller.optimizers``) need torch.
"""

from __future__ import annotations

import itertools

from pydantic import Field, model_validator

from core.validation import StrictModel

DEFAULT_ETA: tuple[float, float] = (1 / 4500, 1 / 50)
"""Cost weights eta of (cpu_millicores, bandwidth_mbps): the paper's normalization by the largest allocation."""


class MicroOptSettings(StrictModel):
    """Hyper-parameters of Algorithm 1 (names follow the paper where it names them)."""

    random_samples: int = Field(256, ge=1, description="random allocations evaluated to pick the starts")
    starts: int = Field(4, ge=1, description="gradient-descent starts run in parallel")
    outer_iterations: int = Field(12, ge=1, description="tau_1,max")
    inner_iterations: int = Field(5, ge=1, description="tau_2,max")
    min_outer_iterations: int = Field(6, ge=1, description="outer iterations before the gap test may stop")
    lr_allocation: float = Field(0.03, gt=0, description="alpha_1, first Adam step, allocations scaled to [0, 1]")
    lr_decay: float = Field(0.7, gt=0, le=1, description="factor on alpha_1 after each outer iteration")
    lr_qos_multiplier: float = Field(2.0, gt=0, description="alpha_2, dual step of lambda")
    lr_capacity_multiplier: float = Field(2.0, gt=0, description="alpha_3, dual step of mu (prices excess / R)")
    initial_lambda: float = Field(1.0, ge=0, description="initial QoS multipliers")
    rho: float = Field(10.0, gt=0, description="sigmoid sharpness, per QoS unit (Mbps)")
    qos_samples: int = Field(16, ge=2, description="reparameterized QoS samples per traffic point")
    gap_tolerance: float = Field(1e-3, ge=0, description="epsilon_1: stop when (UB - LB) / UB is below")
    gradient_tolerance: float = Field(1e-5, ge=0, description="epsilon_2: end the inner loop when below")
    refine_rounds: int = Field(10, ge=0, description="boundary-refinement rounds (0: no refinement)")
    refine_steps: int = Field(2, ge=1, description="refinement-box points on each side of its centre, per resource")
    refine_radius: float = Field(0.03, gt=0, description="initial half-width of the refinement box, unit scale")
    refine_shrink: float = Field(0.5, gt=0, lt=1, description="box factor when a slice's best stays at the centre")
    refine_grow: float = Field(2.0, ge=1, description="box factor along a resource a move reached the edge of")
    price_steps: int = Field(10, ge=0, description="doublings and bisections of a resource's capacity price")
    price_rounds: int = Field(3, ge=1, description="rounds over the over-used resources' prices when R binds")
    sigma_multiplier: float | None = Field(
        None, ge=0, description="ablation (Sec. VI-C): optimize the scalar QoS mu - k sigma with this k "
        "(0: MicroOpt-0sigma, 2: MicroOpt-2sigma); None: the QoS distribution (MicroOpt)")
    seed: int = 0


class GridSettings(StrictModel):
    """Grid resolution and evaluation batch size."""

    cpu_step: float = Field(5.0, gt=0, description="millicores between grid lines")
    bandwidth_step: float = Field(0.05, gt=0, description="Mbps between grid lines")
    batch: int = Field(65536, ge=1, description="grid points evaluated per model call")


class ExactSettings(StrictModel):
    """Resolution of the exact solver: its CPU scan, bandwidth bracketing, refinement and knapsack grid."""

    cpu_step: float = Field(25.0, gt=0, description="millicores between the CPU values of the first scan")
    bandwidth_points: int = Field(48, ge=2, description="bandwidth values bracketing the least feasible "
                                  "bandwidth at each CPU value (bisection then closes the bracket)")
    nonmonotone_factor: int = Field(8, ge=1, description="finer bracketing grid where the constraint is not "
                                    "monotone in bandwidth along a CPU value")
    local_minima: int = Field(4, ge=1, description="local minima of the first scan refined per slice")
    refine_steps: tuple[float, ...] = Field((5.0, 1.0), description="CPU steps of the successive refinements "
                                            "around each minimum, each spanning the previous step either side")
    tolerance: float = Field(1e-4, gt=0, description="bisection stops below this bracket width, resource units")
    knapsack_cpu_step: float = Field(50.0, gt=0, description="millicores between the CPU values of each slice's "
                                     "first frontier when shared capacities couple the slices, at most (less where "
                                     "the slices' CPU windows span fewer than knapsack_points such steps)")
    knapsack_points: int = Field(48, ge=2, description="CPU values the first knapsack grid needs at most to span "
                                 "the widest slice's CPU window (its step: the least multiple of the next step "
                                 "that does, up to knapsack_cpu_step)")
    knapsack_refine_steps: tuple[float, ...] = Field((5.0, 1.0), description="CPU steps of the successive "
                                                     "knapsacks, each within two steps of the previous grid around "
                                                     "each slice's choice (each step a whole multiple of the next)")
    knapsack_window: bool = Field(True, description="search each slice's CPU from the least at which it meets its "
                                  "QoS up to what the CPU capacity leaves it (False: the whole bounds, from the lower)")
    anchor_every: int = Field(8, ge=1, description="along a frontier, every this many CPU values is bracketed on the "
                              "coarse bandwidth grid; those between take their neighbours' answers as the bracket")
    batch: int = Field(1 << 21, ge=1024, description="slice-model rows (allocations x traffic values) per call")

    @model_validator(mode="after")
    def _steps_nest(self) -> ExactSettings:
        """Each knapsack grid lies on the next one's, so a finer grid can hold the coarser grid's choice."""
        steps = (self.knapsack_cpu_step, *self.knapsack_refine_steps)
        for coarse, fine in itertools.pairwise(steps):
            if fine >= coarse or abs(coarse / fine - round(coarse / fine)) > 1e-9:
                raise ValueError(f"knapsack steps {list(steps)}: each must be a whole multiple of the next")
        return self
