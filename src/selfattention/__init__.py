"""Self-Attention, from Loops to GPUs: the course library."""
__version__ = "0.1.0"
