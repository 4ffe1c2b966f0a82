"""ipgate: a userspace IP gateway configured with the classic Linux commands."""

__version__ = "0.1.0"
