"""Domain errors of the prompt registry.

Every message is one line that names the registry or the prompt (kind name@version) and says what
to do, so the CLI can print it as is.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every error the registry raises on purpose."""


class NotFoundError(RegistryError):
    """A prompt, version or evaluation target that is not in the catalog."""


class IntegrityError(RegistryError):
    """A blob that is missing or whose bytes no longer match the recorded sha256."""


class InUseError(RegistryError):
    """A removal that would leave targets pointing at prompts that no longer exist."""


class RegistryBusyError(RegistryError):
    """Another process held the write lock for longer than the busy timeout."""
