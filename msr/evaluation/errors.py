"""The one exception type for mistakes a user can make when evaluating."""


class EvaluationError(ValueError):
    """A bad input to evaluation (missing file, malformed JSON, unknown image or category id, ...).

    The message always names the file, key or id at fault.
    """
