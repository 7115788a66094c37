"""chiploop: train spiking networks as a neuromorphic chip would.

The main names live at the package root and are imported on first use (`import chiploop` stays
light): `load_profile`, `Trainer`, `NetworkSpec`, `open_chip`, `make_task`... see `dir(chiploop)`.
"""

from importlib.metadata import PackageNotFoundError, version

import lazy_loader

try:
    __version__ = version("chiploop")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__getattr__, _, _names = lazy_loader.attach(
    __name__,
    submod_attrs={
        "chip_profiles": ["ChipProfile", "list_profiles", "load_profile"],
        "chip": ["Chip", "ChipBase", "DeviceModel", "NetworkSpec", "Recording", "open_chip"],
        "emulator": ["BrianChip", "TorchTwin", "TwinChip"],
        "training": ["Trainer", "History", "make_estimator", "make_task"],
        "training.units": ["ScaledReadout", "init_weights", "layer_units"],
        "errors": ["ChiploopError"],
    },
)
__all__ = ["__version__", *_names]


def __dir__() -> list[str]:
    return __all__
