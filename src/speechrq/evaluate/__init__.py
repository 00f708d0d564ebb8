"""Evaluation of frozen encoders: SUPERB-style probes over a weighted layer sum, target-quality analyses, results and figures."""
