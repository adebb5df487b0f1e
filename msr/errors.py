"""Errors a user can cause and fix: one message that names the file, key or value at fault.

Entry points turn a `UserError` into one line on stderr and exit status 2 instead of a traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix (bad path, malformed file, unknown key); the message names it."""


class DatasetError(UserError):
    """A data set file is missing, unreadable or malformed; the message names the file (and the key)."""


class EvaluationError(UserError):
    """A bad input to evaluation (missing file, malformed JSON, unknown image or category id, ...)."""


class ConfigError(UserError):
    """A configuration value that cannot work; the message names the key and the value."""
