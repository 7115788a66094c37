"""The chip core every backend shares: the rules of a profile and their one definition in torch
(`dynamics`) and in C (`csrc/net.c`, configured through `c_config`).

Names are re-exported lazily: the rules and the C configuration do not import torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "rules": ["Rules"],
        "dynamics": [
            "Credit",
            "Drive",
            "LayerParams",
            "LayerState",
            "NetworkParams",
            "NetworkState",
            "Trace",
            "network_params",
            "simulate",
            "step",
        ],
        "c_config": ["net_config", "neuron_vectors"],
    },
)
