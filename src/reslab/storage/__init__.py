"""Bytes on disk, the lowest layer: atomic writes, the checkpoint file format, run-folder locks.

Everything above (weights, training, inference, the CLI) imports from here; nothing
here imports a model, a data set or the training loop.
"""
