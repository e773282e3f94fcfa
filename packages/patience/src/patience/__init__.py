"""patience: retry a command with backoff; the core shared with rpr and the daemon."""

__version__ = "0.1.0"
