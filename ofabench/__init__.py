"""ofabench: hardware-aware NAS benchmarking on Once-for-All supernets."""

__version__ = "0.1.0"
