"""Data: the embedded synthetic corpus, real-corpus importers, audio checks, batching.

Data is described by lhotse manifests first (recordings, supervisions, cuts) and
processed lazily second (audio is decoded when a batch is built).
"""
