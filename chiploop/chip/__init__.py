"""The chip core every backend shares: the rules of a profile and their one definition in torch
(`dynamics`) and in C (`csrc/net.c`, configured through `c_config`).

Names are re-exported lazily: the rules and the C configuration do not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "Rules": "chiploop.chip.rules",
    "Credit": "chiploop.chip.dynamics",
    "Drive": "chiploop.chip.dynamics",
    "LayerParams": "chiploop.chip.dynamics",
    "LayerState": "chiploop.chip.dynamics",
    "NetworkParams": "chiploop.chip.dynamics",
    "NetworkState": "chiploop.chip.dynamics",
    "Trace": "chiploop.chip.dynamics",
    "network_params": "chiploop.chip.dynamics",
    "simulate": "chiploop.chip.dynamics",
    "step": "chiploop.chip.dynamics",
    "net_config": "chiploop.chip.c_config",
    "neuron_vectors": "chiploop.chip.c_config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'chiploop.chip' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
