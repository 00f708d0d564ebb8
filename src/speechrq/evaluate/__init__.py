"""Evaluation: frozen-encoder featurizer with a hidden-state cache (probes and analyses follow)."""
