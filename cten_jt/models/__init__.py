"""CTEN in Jittor, parameter for parameter the model of ``cten_torch_ref``."""
from cten_common.config import ModelConfig
from .cten import CTEN


def build_model(config=None, **overrides):
    """CTEN from a ModelConfig (or dict) with keyword overrides."""
    if isinstance(config, ModelConfig):
        config = config.to_dict()
    return CTEN(**{**(config or {}), **overrides})


__all__ = ["CTEN", "ModelConfig", "build_model"]
