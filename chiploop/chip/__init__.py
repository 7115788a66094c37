"""The chip core every backend shares: the Chip protocol and Recording, ChipBase (the plumbing of
every backend), NetworkSpec, the device model, `open_chip`, and the rules of a profile with their
one definition in torch (`dynamics`) and in C (`csrc/net.c`, configured through `c_config`).

Names are re-exported lazily: NetworkSpec, the rules and the C configuration do not import torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "protocol": ["Chip", "Recording"],
        "base": ["ChipBase"],
        "network": ["NetworkSpec"],
        "device_model": ["DeviceModel"],
        "targets": ["open_chip"],
        "surrogates": ["Surrogate", "SuperSpike"],
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
