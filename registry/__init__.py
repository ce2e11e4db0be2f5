"""Prompt registry: versioned soft prompts and attention modules in SQLite + safetensors blobs.

Imports nothing from attemptctl and no torch: callers hand over serialised safetensors bytes.
"""

from .errors import InUseError, IntegrityError, NotFoundError, RegistryBusyError, RegistryError
from .records import KINDS, EvaluationRecord, PromptRecord
from .store import Registry

__all__ = [
    "KINDS",
    "EvaluationRecord",
    "InUseError",
    "IntegrityError",
    "NotFoundError",
    "PromptRecord",
    "Registry",
    "RegistryBusyError",
    "RegistryError",
]
