"""The attention module G of ATTEMPT (Asai et al., "ATTEMPT: Parameter-Efficient Multi-task Tuning
via Attentional Mixtures of Soft Prompts", EMNLP 2022).

For every input X, G scores the frozen source prompts P_1..P_t and the target prompt P_{t+1}:

    X̂   = maxpool over the non-padding input token embeddings              (d,)
    P̂_j = maxpool over the m positions of prompt j                         (d,)
    H   = LayerNorm(W_up · SiLU(W_down · X̂))                               (d,)
    a_j = softmax_j( P̂_j · H / (d · e^K) )   over the t sources and the target, K = 1
    P_instance = P_target + Σ_j a_j P_j       (so the target's own weight is 1 + a_{t+1})

G's parameters do not depend on t, so the same G scores any set of sources: adding or removing a
source only changes which rows enter the softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_RANK = 100


def masked_maxpool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of ``x`` (B, L, d) at positions where ``mask`` (B, L) is true -> (B, d).

    Padding must not win the max (a bug of the paper's code), so it is filled with -inf first.
    """
    filled = x.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
    return filled.max(dim=1).values


class AttentionModule(nn.Module):
    """G: W_down (d→r), SiLU, W_up (r→d), LayerNorm(d); scores prompts against an input."""

    def __init__(self, d: int, rank: int = DEFAULT_RANK, temperature_k: float = 1.0) -> None:
        super().__init__()
        self.down = nn.Linear(d, rank, bias=False)
        self.up = nn.Linear(rank, d, bias=False)
        self.norm = nn.LayerNorm(d)
        self.d = d
        self.temperature_k = temperature_k

    def query(self, input_embeds: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
        """H for each row: input embeddings (B, L, d) and mask (B, L) -> (B, d)."""
        pooled = masked_maxpool(input_embeds, input_mask)
        return self.norm(self.up(nn.functional.silu(self.down(pooled))))

    def forward(self, input_embeds: torch.Tensor, input_mask: torch.Tensor, prompts: torch.Tensor,
                prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights a (B, n) over ``prompts`` (B, n, m, d) or (n, m, d).

        ``prompt_mask`` (B, n) marks which of the n prompt slots a row may attend to (rows of different
        tasks in one batch mix different numbers of sources); masked slots get weight exactly 0.
        """
        query = self.query(input_embeds, input_mask)                       # (B, d)
        keys = prompts.max(dim=-2).values                                   # (B, n, d) or (n, d)
        if keys.dim() == 2:
            keys = keys.unsqueeze(0).expand(query.shape[0], -1, -1)
        scores = torch.einsum("bnd,bd->bn", keys, query) / (self.d * math.exp(self.temperature_k))
        if prompt_mask is not None:
            scores = scores.masked_fill(~prompt_mask.bool(), float("-inf"))
        return scores.softmax(dim=-1)


def mix_prompts(weights: torch.Tensor, prompts: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """P_instance = target + Σ_j weights_j · prompts_j.

    weights (B, n), prompts (B, n, m, d) or (n, m, d), target (B, m, d) or None (the no-target
    ablation) -> (B, m, d).
    """
    if prompts.dim() == 3:
        mixed = torch.einsum("bn,nmd->bmd", weights, prompts)
    else:
        mixed = torch.einsum("bn,bnmd->bmd", weights, prompts)
    return mixed if target is None else target + mixed
