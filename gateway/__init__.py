"""zapgate: the process — configuration, composition root, supervision, logging."""

__version__ = "0.1.0"
