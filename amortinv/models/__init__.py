"""Amortised encoders: conditioned ResNets (hypernetwork or FiLM), prompt-ViT, audio."""

from amortinv.models.encoder import ARCHS, Encoder, Inputs, ModelConfig, build_backbone, fast_bf16
from amortinv.models.resnet import ConditionedResNet

__all__ = ["ARCHS", "ConditionedResNet", "Encoder", "Inputs", "ModelConfig", "build_backbone",
           "fast_bf16"]
