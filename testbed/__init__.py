"""ML deployment testbed: serve one model on several platforms and measure what each one does."""

__version__ = "0.1.0"
