"""Jittor data sets over the shared numpy core (cten_common.data)."""
from .dataset import CTENDataset

__all__ = ["CTENDataset"]
