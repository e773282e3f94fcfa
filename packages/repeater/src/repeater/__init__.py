"""repeater: run a command continuously, on time (the `rpr` executable)."""

__version__ = "0.1.0"
