"""``registry upgrade``: complete the fingerprints of prompts registered before attemptctl fingerprinted
the tokenizer, so that their BOS, EOS and padding ids are checked like the rest.

Such a record stores no ``special_ids``. It is still checked on the weights and the config, and
used with a warning; upgrading stores the loaded backbone's special ids in it, once that backbone
matches the record on every other key. The ids are the loaded tokenizer's: the ones the prompt was
trained with as long as that tokenizer has not changed since (a SmolLM2 converted under
transformers 5.17 ended texts with id 1, not 2: prompts trained on it are better retrained).
"""

from __future__ import annotations

from dataclasses import dataclass

from attemptctl.method.backbones import MODEL_KEYS
from attemptctl.workflows.workspace import Workspace
from registry import PromptRecord, Registry


@dataclass(frozen=True)
class UpgradeResult:
    """What one upgrade did, for the backbone it loaded (``backbone``)."""

    backbone: str
    upgraded: list[PromptRecord]
    """Records that now store the backbone's special ids (as they read after the upgrade)."""
    current: list[PromptRecord]
    """Records whose fingerprint already held them: nothing to do."""
    other: list[PromptRecord]
    """Records without them whose weights or config differ from the loaded backbone: left alone."""


def upgrade_fingerprints(ws: Workspace, registry: Registry, spec: str) -> UpgradeResult:
    """Store backbone ``spec``'s special ids in every record that lacks them and matches it otherwise.

    Loads the backbone once, and only when some record needs it.
    """
    records = registry.list()
    old = [r for r in records if "special_ids" not in r.fingerprint]
    current = [r for r in records if "special_ids" in r.fingerprint]
    if not old:
        return UpgradeResult(spec, [], current, [])
    fingerprint = ws.load_backbone(spec).fingerprint
    upgraded, other = [], []
    for record in old:
        if any(record.fingerprint.get(key) != fingerprint[key] for key in MODEL_KEYS):
            other.append(record)
            continue
        missing = {key: value for key, value in fingerprint.items() if key not in record.fingerprint}
        upgraded.append(registry.extend_fingerprint(record.kind, record.ref, missing))
    return UpgradeResult(spec, upgraded, current, other)
