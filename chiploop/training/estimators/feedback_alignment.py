"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment (Nøkland 2016): full
BPTT, but the error reaches the hidden layers through fixed random matrices instead of the
transposed weights; every weight still gets the gradient of its own layer's error.

feedback_alignment: the error crosses each feed-forward matrix leaving a hidden layer (W_out, and
between hidden layers W_k→k+1) through its own B. direct_feedback_alignment: the readout error goes
straight to every hidden layer through a B `[H_k, O]`; no error travels between hidden layers.
With one hidden layer the two are the same rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chiploop.training.estimators.bptt import CreditEstimator
from chiploop.training.estimators.eprop import RandomFeedback
from chiploop.training.estimators.unroll import Credit

if TYPE_CHECKING:
    from chiploop.emulator.twin import TorchTwin


class FeedbackAlignment(CreditEstimator):
    """BPTT with random fixed feedback across every layer (seeded; scale as `eprop.RandomFeedback`)."""

    name = "feedback_alignment"

    def __init__(self, seed: int = 0, feedback_scale: float | None = None, **base: float) -> None:
        super().__init__(**base)
        self.feedback = RandomFeedback(seed, feedback_scale)

    def credit(self, model: TorchTwin) -> Credit:
        return Credit(recurrent="full", feedback=self.feedback.matrices(model))


class DirectFeedbackAlignment(CreditEstimator):
    """BPTT within each layer; the readout error reaches every hidden layer through its own fixed
    random B (seeded; scale as `eprop.RandomFeedback`)."""

    name = "direct_feedback_alignment"

    def __init__(self, seed: int = 0, feedback_scale: float | None = None, **base: float) -> None:
        super().__init__(**base)
        self.feedback = RandomFeedback(seed, feedback_scale)

    def credit(self, model: TorchTwin) -> Credit:
        direct = self.feedback.direct(model)
        last = model.spec.layer_names[-1]
        return Credit(recurrent="full", feedback={f"{last}_out": direct[last]}, direct=direct)
