"""What every speechrq training loop shares: optimizer and schedule, precision, RNG, metrics log."""
