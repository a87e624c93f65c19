"""vssl: Variational Self-Supervised Learning (Yavuz & Yanikoglu, 2025) and its experiment pipeline."""

__version__ = "0.1.0"
