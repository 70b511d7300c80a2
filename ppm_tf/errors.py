"""Errors that stop a stage for a reason the user can act on: the CLI prints the message
instead of a traceback."""


class StageError(RuntimeError):
    """A stage refused to continue (diverged training, an export that failed validation)."""
