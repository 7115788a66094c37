"""The emulator: the Chip protocol, NetworkSpec, BrianChip (Brian2), TorchTwin (torch), open_chip.

Names are re-exported lazily, so importing NetworkSpec does not import torch or Brian2.
"""

from importlib import import_module

_EXPORTS = {
    "Chip": "chiploop.emulator.chip",
    "Recording": "chiploop.emulator.chip",
    "NetworkSpec": "chiploop.emulator.network",
    "DeviceModel": "chiploop.emulator.device_model",
    "BrianChip": "chiploop.emulator.brian",
    "TorchTwin": "chiploop.emulator.twin",
    "TwinOutput": "chiploop.emulator.twin",
    "open_chip": "chiploop.emulator.targets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'chiploop.emulator' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
