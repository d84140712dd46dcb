"""Hierarchical Reasoning Models: model, data, training and evaluation (no Ray here)."""

__version__ = "0.1.0"
