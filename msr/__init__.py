"""msr: Mask Scoring R-CNN on PyTorch, torchvision, Lightning and Hydra."""

__version__ = "0.1.0"
