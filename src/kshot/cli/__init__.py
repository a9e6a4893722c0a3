"""The command line: ``kshot train | evaluate | adapt | predict``."""

from .main import app, main

__all__ = ["app", "main"]
