"""Targets for masked prediction: random-projection quantizers (and, later, target encoders)."""

from .random_projection import RandomProjectionQuantizer, stack_frames

__all__ = ["RandomProjectionQuantizer", "stack_frames"]
