"""Soft prompts (prompt tuning, Lester et al., EMNLP 2021).

A soft prompt is an ``m × d`` matrix of trainable vectors that is prepended to the (frozen) input
embeddings of a language model; only the prompt learns. Following the paper, a fresh prompt is
initialised from the embeddings of ``m`` tokens sampled from the 5,000 most frequent vocabulary
entries. BPE and SentencePiece vocabularies are ordered roughly by frequency, so "most frequent"
is approximated by the lowest 5,000 ids that are not special tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

FREQUENT_VOCAB = 5000


class SoftPrompt(nn.Module):
    """A trainable prompt ``weight`` of shape (m, d)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"a soft prompt is (m, d); got shape {tuple(weight.shape)}")
        self.weight = nn.Parameter(weight.detach().clone().float())

    @property
    def length(self) -> int:
        return self.weight.shape[0]

    @classmethod
    def from_vocab(cls, embeddings: torch.Tensor, length: int, *, generator: torch.Generator | None = None,
                   special_ids: Iterable[int] = ()) -> "SoftPrompt":
        """Initialise from ``length`` embedding rows sampled from the 5,000 lowest non-special ids."""
        special = set(special_ids)
        pool = [i for i in range(min(embeddings.shape[0], FREQUENT_VOCAB + len(special))) if i not in special]
        ids = torch.tensor(pool)[torch.randint(0, len(pool), (length,), generator=generator)]
        return cls(embeddings[ids])

    @classmethod
    def zeros(cls, length: int, d: int) -> "SoftPrompt":
        return cls(torch.zeros(length, d))

    def forward(self, batch_size: int) -> torch.Tensor:
        """The prompt broadcast over a batch: (B, m, d), a view sharing the parameter's storage."""
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)
