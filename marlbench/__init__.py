"""marlbench: a unified benchmark suite for offline cooperative multi-agent RL."""

__version__ = "0.1.0"
