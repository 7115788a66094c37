"""Feedback alignment: full BPTT, but the readout error reaches the hidden layer through a fixed
random matrix B instead of W_outᵀ (Lillicrap et al. 2016); W_out gets its exact gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chiploop.training.estimators.bptt import CreditEstimator
from chiploop.training.estimators.eprop import RandomFeedback
from chiploop.training.estimators.unroll import Credit

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin


class FeedbackAlignment(CreditEstimator):
    """BPTT with random fixed feedback (seeded; scale as `eprop.RandomFeedback`)."""

    name = "feedback_alignment"

    def __init__(self, seed: int = 0, feedback_scale: float | None = None, **base: float) -> None:
        super().__init__(**base)
        self.feedback = RandomFeedback(seed, feedback_scale)

    def credit(self, model: TorchTwin) -> Credit:
        return Credit(recurrent="full", feedback=self.feedback.matrix(model))
