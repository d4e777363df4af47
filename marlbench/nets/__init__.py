"""Networks shared by all algorithms: MLPs, per-agent policies and monotonic mixers."""

from marlbench.nets.mixers import MIXERS, LinearMixer, TwoLayerMixer, make_mixer
from marlbench.nets.mlp import AgentLinear, AgentMLP, mlp
from marlbench.nets.policies import CategoricalPolicy, DecentralisedPolicy, TanhGaussianPolicy, masked_logits

__all__ = [
    "MIXERS",
    "AgentLinear",
    "AgentMLP",
    "CategoricalPolicy",
    "DecentralisedPolicy",
    "LinearMixer",
    "TanhGaussianPolicy",
    "TwoLayerMixer",
    "make_mixer",
    "masked_logits",
    "mlp",
]
