"""Per-row instance prompts for a batch that may mix rows of several tasks.

:class:`PromptMixture` holds the trainable parts of a run — one prompt per task and, for ATTEMPT,
the shared attention module G — plus the frozen source prompts, and turns a batch into one
instance prompt per row. Variants (DESIGN §1 baselines and ablations):

- ``prompt-tuning``: the task's own prompt, nothing mixed (source training, the PT baseline, SPoT);
- ``attempt``: P_target + Σ a_j P_j, softmax over the task's sources and its target prompt;
- ``uniform``: P_target + (1/t) Σ_sources P_j (constant attention);
- ``no-target``: Σ a_j P_j with the softmax over the sources only, no target prompt added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from attemptctl.method.attention import AttentionModule, mix_prompts
from attemptctl.method.variants import MIXINGS, TARGET_COLUMN, variant_of  # noqa: F401  (TARGET_COLUMN re-exported)


class PromptMixture(nn.Module):
    """Trainable task prompts (+ G) over frozen source prompts.

    targets:      task -> initial prompt (m, d); each becomes a trainable parameter
    sources:      source ref -> frozen prompt (m, d), in a stable order (the attention columns)
    task_sources: task -> the source refs that task mixes (a subset of ``sources``)
    """

    def __init__(self, targets: Mapping[str, torch.Tensor], *, sources: Mapping[str, torch.Tensor] | None = None,
                 task_sources: Mapping[str, Sequence[str]] | None = None, attention: AttentionModule | None = None,
                 variant: str = "prompt-tuning") -> None:
        super().__init__()
        if variant not in MIXINGS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(MIXINGS)}")
        self.variant = variant
        self.tasks = list(targets)
        self.prompts = nn.ParameterList([nn.Parameter(p.detach().clone().float()) for p in targets.values()])
        sources = dict(sources or {})
        self.source_refs = list(sources)
        if variant != "prompt-tuning" and not sources:
            raise ValueError(f"variant {variant!r} mixes source prompts; give at least one source")
        if variant_of(variant).has_attention and attention is None:
            raise ValueError(f"variant {variant!r} needs an attention module")
        self.attention = attention if variant_of(variant).has_attention else None
        if sources:
            # Frozen: a buffer, so it moves with .to() but never reaches an optimizer.
            self.register_buffer("source_prompts", torch.stack([p.float() for p in sources.values()]), persistent=False)
        task_sources = task_sources or {task: self.source_refs for task in self.tasks}
        mask = torch.zeros(len(self.tasks), len(self.source_refs) + 1, dtype=torch.bool)
        for i, task in enumerate(self.tasks):
            for ref in task_sources.get(task, ()):
                mask[i, self.source_refs.index(ref)] = True
            mask[i, -1] = variant_of(variant).adds_target
        self.register_buffer("slot_mask", mask, persistent=False)  # (T, t+1): which columns a task mixes

    @property
    def columns(self) -> list[str]:
        """Names of the attention columns: the sources in order, then the target's own prompt."""
        return [*self.source_refs, TARGET_COLUMN]

    def task_prompt(self, task: str) -> torch.Tensor:
        return self.prompts[self.tasks.index(task)]

    def forward(self, task_ids: torch.Tensor, input_embeds: torch.Tensor | None = None,
                input_mask: torch.Tensor | None = None, *, share: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Instance prompts (B, m, d) and attention weights (B, t+1) (None when nothing is mixed).

        task_ids (B,) index ``self.tasks``; input_embeds (B, L, d) and input_mask (B, L) are the
        input tokens G pools over (only needed by the attention variants). With ``share``, a batch
        whose rows all get the same prompt (plain prompt tuning, one task) returns it once as (m, d),
        so a decoder-only LM can compute it once for the whole batch.
        """
        stacked = torch.stack(list(self.prompts))                          # (T, m, d)
        if share and self.variant == "prompt-tuning" and bool((task_ids == task_ids[0]).all()):
            # Indexed from the stack, not the parameter itself: DDP must reach every prompt through the graph.
            return stacked[int(task_ids[0])], None
        target = stacked[task_ids]                                          # (B, m, d)
        if self.variant == "prompt-tuning":
            return target, None
        slots = self.slot_mask[task_ids]                                    # (B, t+1)
        all_prompts = torch.cat([self.source_prompts.unsqueeze(0).expand(len(task_ids), -1, -1, -1),
                                 target.unsqueeze(1)], dim=1)               # (B, t+1, m, d)
        if self.variant == "uniform":
            weights = slots[:, :-1].float()
            weights = weights / weights.sum(-1, keepdim=True)
            weights = torch.cat([weights, torch.zeros_like(weights[:, :1])], dim=-1)
        else:
            weights = self.attention(input_embeds, input_mask, all_prompts, slots)
        base = target if variant_of(self.variant).adds_target else None
        return mix_prompts(weights, all_prompts, base), weights


class PromptBank(nn.Module):
    """Several mixtures — each with its own prompts, sources and G — serving ONE batch.

    ``slots`` maps a slot name (e.g. a prompt ref ``boolq@2``) to a mixture and the task it serves
    there; a batch's task ids index ``self.tasks`` (the slot names). Each row gets the instance
    prompt of its own slot, so prompts of different training runs share one LM forward pass.
    All mixtures must have one prompt length.
    """

    def __init__(self, slots: Mapping[str, tuple[PromptMixture, str]]) -> None:
        super().__init__()
        unique: list[PromptMixture] = []
        for mixture, _ in slots.values():
            if all(mixture is not seen for seen in unique):
                unique.append(mixture)
        lengths = {m.prompts[0].shape[0] for m in unique}
        if len(lengths) > 1:
            raise ValueError(f"a prompt bank needs one prompt length, got {sorted(lengths)}")
        self.mixtures = nn.ModuleList(unique)
        self.tasks = list(slots)
        routes = [(next(i for i, m in enumerate(unique) if m is mixture), mixture.tasks.index(task))
                  for mixture, task in slots.values()]
        self.register_buffer("routes", torch.tensor(routes, dtype=torch.long).reshape(-1, 2), persistent=False)

    def columns(self, slot: str) -> list[str]:
        return self.mixtures[int(self.routes[self.tasks.index(slot), 0])].columns

    def forward(self, task_ids: torch.Tensor, input_embeds: torch.Tensor | None = None,
                input_mask: torch.Tensor | None = None, *, share: bool = False):
        """Instance prompts (B, m, d) and a per-row list of attention weights (each (t_row+1,) or None)."""
        which, local = self.routes[task_ids, 0], self.routes[task_ids, 1]
        if bool((which == which[0]).all()):  # one mixture: it can use its own fast paths
            prompt, weights = self.mixtures[int(which[0])](local, input_embeds, input_mask, share=share)
            return prompt, [None] * len(task_ids) if weights is None else list(weights)
        prompt, weights = None, [None] * len(task_ids)
        for k, mixture in enumerate(self.mixtures):
            rows = (which == k).nonzero().squeeze(-1)
            if rows.numel() == 0:
                continue
            part, part_weights = mixture(local[rows], input_embeds[rows], input_mask[rows])
            if prompt is None:
                prompt = part.new_zeros(len(task_ids), *part.shape[1:])
            prompt[rows] = part
            for r, row in enumerate(rows.tolist()):
                weights[row] = None if part_weights is None else part_weights[r]
        return prompt, weights
