"""Discrete units from any encoder's layer: feature samples, k-means / RVQ / PQ / RPQ, corpus encoding, reports.

The RPQ paper's sections III and IV (``speechrq units fit / encode / report``). Units
read encoders through :class:`speechrq.encoders.EncoderLayer` and never import
``pretrain``.
"""

from .quantizers import KINDS, QuantizerSpec, UnitQuantizer

__all__ = ["KINDS", "QuantizerSpec", "UnitQuantizer"]
