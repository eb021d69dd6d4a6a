"""Reproducibility suite for Importance Weighted Autoencoders (Burda, Grosse, Salakhutdinov)."""

__version__ = "0.1.0"
