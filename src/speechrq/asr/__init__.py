"""Discrete-unit ASR (the RPQ paper's sections III and V): multi-stream unit embeddings, E-Branchformer,
hybrid CTC/attention, joint beam search. Never imports ``pretrain`` or ``evaluate``."""
