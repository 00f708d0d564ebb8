"""speechrq: random-quantization speech pre-training and discrete speech units.

The package is laid out by architecture: ``data`` (corpora, synthesis, batching),
``features`` (log-Mel and its normalisation), and, as they land, ``models``,
``targets``, ``pretrain``, ``evaluate``, ``units`` and ``asr``. Importing the package
is cheap: sub-packages import torch only when they need it.
"""

__version__ = "0.2.0.dev0"
