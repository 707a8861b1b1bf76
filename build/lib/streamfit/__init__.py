"""streamfit: real-time LightGBM predictions on an event stream, retrained as labels arrive."""

__version__ = "0.1.0"
