"""The emulated backends: BrianChip (Brian2), and the torch twin: TorchTwin (the differentiable
learner) and TwinChip (its chip role). The shared core (Chip, NetworkSpec, open_chip) is `chiploop.chip`.

Names are re-exported lazily, so importing the package does not import torch or Brian2.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "brian": ["BrianChip"],
        "twin": ["TorchTwin", "TwinOutput"],
        "twin_chip": ["TwinChip"],
    },
)
