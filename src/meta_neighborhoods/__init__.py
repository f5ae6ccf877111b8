"""Meta-Neighborhoods (Shan, Li, Oliva, NeurIPS 2020) in PyTorch."""

__version__ = "0.1.0"
