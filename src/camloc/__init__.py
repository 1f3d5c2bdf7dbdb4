"""camloc: class activation maps and weakly-supervised object localization for PyTorch classifiers."""

__version__ = "0.1.0"
