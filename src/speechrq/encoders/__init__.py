"""Frozen encoders below evaluation, units and ASR: a checkpoint or Hugging Face folder -> hidden states, cached."""

from .cache import HiddenStateCache, cache_hidden_states, load_batch, pad_states
from .frozen import EncoderLayer, FilterbankEncoder, FrozenEncoder, PretrainCheckpoint, compile_frozen, freeze, load_encoder
from .hf import HuggingFaceEncoder, is_pretrained_folder

__all__ = ["EncoderLayer", "FilterbankEncoder", "FrozenEncoder", "HiddenStateCache", "HuggingFaceEncoder", "PretrainCheckpoint", "cache_hidden_states", "compile_frozen", "freeze",
           "is_pretrained_folder", "load_batch", "load_encoder", "pad_states"]
