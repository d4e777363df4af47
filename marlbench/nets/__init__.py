"""Networks shared by all algorithms: MLPs, per-agent policies and monotonic mixers."""

from marlbench.nets.autoregressive import AgentPolicies, AutoregressiveBehaviour, mask_unavailable, masked_log_softmax
from marlbench.nets.mixers import MIXERS, LinearMixer, TwoLayerMixer, make_mixer
from marlbench.nets.mlp import AgentLinear, AgentMLP, mlp
from marlbench.nets.policies import CategoricalPolicy, Policy, TanhGaussianPolicy, masked_logits, policy_for_spec

__all__ = [
    "MIXERS",
    "AgentLinear",
    "AgentMLP",
    "AgentPolicies",
    "AutoregressiveBehaviour",
    "CategoricalPolicy",
    "LinearMixer",
    "Policy",
    "TanhGaussianPolicy",
    "TwoLayerMixer",
    "make_mixer",
    "mask_unavailable",
    "masked_log_softmax",
    "masked_logits",
    "mlp",
    "policy_for_spec",
]
