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

Two parts of that formula are the paper's choices for T5-base and do not carry over to every
backbone (docs/method.md has the measurements on SmolLM2). Each is selectable by name, and what a
module was built with is stored with it (buffers and payload metadata), so it is evaluated the same
way forever:

- the divisor (``scale``): ``paper`` is d · e^K. ``calibrated`` (default) is s · e^K, where s is the
  standard deviation of the per-input-centred raw scores P̂_j · H, measured once when G is created
  (:meth:`AttentionModule.calibrate`) on the run's prompts and a sample of its training inputs, so
  the logits start with a spread of about e^-K across sources on any embedding scale.
- the pooled input (``pooling``): ``max`` is the paper's max-pool. ``standardized-max`` (default)
  standardises each dimension of X̂ by its mean and standard deviation over the same sample: the
  maximum of a dimension over ~80 tokens is much the same for every input, so without it only ~4% of
  X̂'s energy depends on the input.
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


SCALES = ("calibrated", "paper")
NORMS = ("trained", "frozen")
"""G's LayerNorm affine: trained (this tool's first choice), or frozen at weight 1, bias 0 (the official code)."""
POOLINGS = ("standardized-max", "max")
#: How many training inputs :meth:`AttentionModule.calibrate` looks at (the embedding lookups only).
CALIBRATION_ROWS = 256


class AttentionModule(nn.Module):
    """G: W_down (d→r), SiLU, W_up (r→d), LayerNorm(d); scores prompts against an input.

    Buffers (saved with the module): ``input_mean`` and ``input_std`` (d,), the standardisation of
    the pooled input (0 and 1 for ``pooling="max"``), and ``score_scale`` (), the divisor before
    e^K (d for ``scale="paper"``).
    """

    def __init__(self, d: int, rank: int = DEFAULT_RANK, temperature_k: float = 1.0, *, scale: str = "calibrated",
                 pooling: str = "standardized-max", norm: str = "trained") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown attention norm {norm!r}; choose one of {', '.join(NORMS)}")
        if scale not in SCALES:
            raise ValueError(f"unknown attention scale {scale!r}; choose one of {', '.join(SCALES)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown attention pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.down = nn.Linear(d, rank, bias=False)
        self.up = nn.Linear(rank, d, bias=False)
        self.norm = nn.LayerNorm(d)
        # Frozen, its bias cannot grow until G saturates (what training it did here, issue 28); the
        # parameters stay in the state dict, so a stored module loads either way.
        self.norm.requires_grad_(norm == "trained")
        self.norm_mode = norm
        self.d = d
        self.temperature_k = temperature_k
        self.scale, self.pooling = scale, pooling
        self.register_buffer("input_mean", torch.zeros(d))
        self.register_buffer("input_std", torch.ones(d))
        self.register_buffer("score_scale", torch.tensor(float(d)))

    def pooled(self, input_embeds: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
        """X̂ (B, d): the masked max-pool, standardised with the stored statistics."""
        return (masked_maxpool(input_embeds, input_mask) - self.input_mean) / self.input_std

    def query(self, input_embeds: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
        """H for each row: input embeddings (B, L, d) and mask (B, L) -> (B, d)."""
        return self.norm(self.up(nn.functional.silu(self.down(self.pooled(input_embeds, input_mask)))))

    def divisor(self) -> torch.Tensor:
        return self.score_scale * math.exp(self.temperature_k)

    @torch.no_grad()
    def calibrate(self, input_embeds: torch.Tensor, input_mask: torch.Tensor, prompts: torch.Tensor) -> None:
        """Set the pooling statistics and the calibrated divisor from sample inputs (N, L, d) and the
        prompts (n, m, d) this module will mix; the paper's settings need nothing and stay as they are."""
        pooled = masked_maxpool(input_embeds, input_mask)
        if self.pooling == "standardized-max" and len(pooled) > 1:
            std = pooled.std(dim=0)
            # A dimension whose maximum never changes (the same token wins everywhere) carries no signal.
            self.input_mean.copy_(pooled.mean(dim=0))
            self.input_std.copy_(std.clamp(min=1e-2 * float(std.mean()) + 1e-12))
        if self.scale == "calibrated":
            scores = self.query(input_embeds, input_mask) @ prompts.max(dim=-2).values.T   # (N, n)
            spread = (scores - scores.mean(dim=-1, keepdim=True)).std()
            self.score_scale.fill_(float(spread) if spread > 0 else 1.0)

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
        scores = torch.einsum("bnd,bd->bn", keys, query) / self.divisor()
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
