"""dmao: Dynamic Model Architecture Optimization for CTC speech recognition."""

__version__ = "0.1.0"
