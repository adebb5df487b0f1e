"""Errors a user can cause with bad data: one clear message that names the file."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data set file is missing, unreadable or malformed; the message names the file (and the key)."""
