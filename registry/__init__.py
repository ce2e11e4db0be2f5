"""Prompt registry: versioned soft prompts and attention modules in SQLite + safetensors blobs.

Imports nothing from attemptctl and no torch: callers hand over serialised safetensors bytes.
"""

from .errors import IntegrityError, InUseError, NotFoundError, RegistryBusyError, RegistryError
from .maintenance import BackupReport, Finding, VerifyReport
from .migrations import MIGRATIONS, Migration
from .records import KINDS, EvaluationRecord, PromptRecord
from .store import Registry

__all__ = [
    "KINDS",
    "MIGRATIONS",
    "BackupReport",
    "Finding",
    "Migration",
    "VerifyReport",
    "EvaluationRecord",
    "InUseError",
    "IntegrityError",
    "NotFoundError",
    "PromptRecord",
    "Registry",
    "RegistryBusyError",
    "RegistryError",
]
