"""The version, in a module of its own so that every layer may read it without the API."""

__version__ = "0.1.0"
