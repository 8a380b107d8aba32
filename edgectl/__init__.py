"""edgectl: put machine-learning models on edge devices and keep them healthy there."""

__version__ = "0.1.0"
