"""Training engines for the VLA stack."""

__version__ = "0.1.0"
