"""One vocabulary for every modality."""

__version__ = "0.1.0"
