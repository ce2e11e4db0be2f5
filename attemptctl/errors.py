"""Domain errors. The CLI turns every one of them into one line on stderr and exit code 1.

Messages name the thing that is wrong and say what to do about it; they never need a traceback.
"""


class AttemptError(Exception):
    """Base of every error attemptctl reports to the user as a one-line message."""


class UnknownTaskError(AttemptError):
    """A task name that is not in the catalogue."""


class DataError(AttemptError):
    """A missing data file, a malformed record, a missing field or an out-of-range label.

    The message starts with ``path:line:`` where the problem has a place in a file.
    """


class BackboneError(AttemptError):
    """A backbone that cannot be loaded, or a prompt refused for a backbone it was not trained on."""


class ConfigError(AttemptError):
    """A configuration value that is out of range or inconsistent with others."""
