"""watermon: the data backbone of the Kazakhstan-Uzbekistan transboundary water monitoring system."""

__version__ = "0.1.0"
