"""Pre-training: the masked-prediction model and its factory, masking, objective, Latent-RQ stages, the micro-step, meters and the trainer."""
