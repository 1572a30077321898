"""yinzi: a self-hosted audio-processing order service."""

__version__ = "0.1.0"
