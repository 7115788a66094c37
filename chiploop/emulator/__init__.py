"""The emulator: the Chip protocol, NetworkSpec, BrianChip (Brian2), TorchTwin (torch), open_chip.

Names are re-exported lazily, so importing NetworkSpec does not import torch or Brian2.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "chip": ["Chip", "Recording"],
        "network": ["NetworkSpec"],
        "device_model": ["DeviceModel"],
        "brian": ["BrianChip"],
        "twin": ["TorchTwin", "TwinOutput"],
        "targets": ["open_chip"],
    },
)
