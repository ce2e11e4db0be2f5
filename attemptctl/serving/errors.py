"""The one error a request can end in: an HTTP status and a message that names the problem."""

from __future__ import annotations

from attemptctl.errors import AttemptError


class ServeError(AttemptError):
    """A request refused (4xx) or failed (5xx); ``str(error)`` is the one-line message the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
