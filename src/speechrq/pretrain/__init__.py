"""Pre-training: masking, objective, stages and the trainer."""
