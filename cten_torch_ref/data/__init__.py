"""PyTorch data sets over the shared numpy core (cten_common.data)."""
from .dataset import CTENDataset, model_visual

__all__ = ["CTENDataset", "model_visual"]
