"""A frozen, UNMODIFIED Hugging Face LM driven through ``inputs_embeds`` with a soft prompt in front.

The whole prompt mechanism is: embed the input ids with the frozen table, concatenate the (B, m, d)
instance prompt in front, extend the attention mask by m ones. Encoder-decoder models (T5) get the
prompt on the encoder input; decoder-only models get it before the input tokens.

Batch layout (see :func:`collate`):

- decoder-only: ``[prompt][pad …][input][target]`` — token rows are LEFT-padded so every row ends
  at the same position. Targets are then right-aligned, and the vocabulary projection is computed
  only for the last K+1 positions (``logits_to_keep``) instead of all m+L. Position ids come from
  the attention mask, so the pads between prompt and input change nothing.
- encoder-decoder: encoder ``[prompt][input][pad …]``; targets go to the decoder as labels.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attemptctl.method.backbones import Backbone

IGNORE = -100
SCORINGS = ("sum", "mean", "first")
"""How rank classification scores a label (:func:`label_scores`)."""
DEFAULT_SCORING = "sum"
"""What ``eval``, ``predict`` and training's dev checks use (docs/method.md: how it was chosen)."""


@dataclass(frozen=True)
class Encoded:
    """One example as token ids: input (no prompt) and target (ends with EOS).

    ``special`` counts the leading special tokens of ``input_ids`` (a decoder-only model's BOS):
    the model sees them, G does not pool over them (they are the same for every input).
    """

    input_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    special: int = 0

    def __len__(self) -> int:
        return len(self.input_ids) + len(self.target_ids)


@dataclass
class Batch:
    """A collated batch; shapes in the comments (L tokens, K target positions)."""

    task_ids: torch.Tensor        # (B,)   index into the mixture's tasks
    input_ids: torch.Tensor       # (B, L) decoder-only: left-padded input+target; enc-dec: right-padded input
    attention_mask: torch.Tensor  # (B, L)
    input_mask: torch.Tensor      # (B, L) true on input tokens only (what G max-pools)
    labels: torch.Tensor          # (B, K) target ids, IGNORE elsewhere; decoder-only: right-aligned
    tokens: int = 0               # real (unpadded) tokens, counted on the host: no device sync to report it

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def encode(backbone: Backbone, text: str, target: str | None, max_length: int,
           cut: tuple[int, int] | None = None) -> Encoded:
    """Tokenise one input (at most ``max_length`` tokens) and its target text.

    An input too long loses tokens from the end of ``cut``, the character span of its longest field
    (:attr:`~attemptctl.tasks.Example.cut`: the premise or passage), so a hypothesis or question after it
    stays whole; without ``cut``, or when the rest alone is too long, it loses its end.
    """
    tok = backbone.tokenizer
    if backbone.is_encoder_decoder:
        # T5's tokenizer closes every sequence with </s>; other tokenizers get it added.
        ids = _closed(_input_ids(tok, text, max_length - 1, cut) if cut else
                      tok(text, truncation=True, max_length=max_length).input_ids, backbone.eos_id)
        target_ids = _closed(tok(target).input_ids, backbone.eos_id) if target is not None else []
    else:
        # BOS where the model family expects one (its tokenizer adds it: Llama 3, Gemma), as in pre-training.
        bos = list(backbone.bos_prefix)
        ids = bos + _input_ids(tok, text, max_length, cut)
        # Leading space: the label is a new word after the input, tokenised as it would be in text.
        target_ids = tok(" " + target, add_special_tokens=False).input_ids + [backbone.eos_id] if target is not None else []
        return Encoded(tuple(ids), tuple(target_ids), special=len(bos))
    return Encoded(tuple(ids), tuple(target_ids))


def _input_ids(tok, text: str, max_length: int, cut: tuple[int, int] | None) -> list[int]:
    """The input's token ids without special tokens, shortened inside ``cut`` when there are too many.

    An input that fits is tokenised whole, exactly as without ``cut``. One that does not is tokenised in
    three pieces split just before spaces (the field's value with the space before it), where a
    byte-level BPE splits words anyway.
    """
    ids = tok(text, add_special_tokens=False).input_ids
    if len(ids) <= max_length or cut is None:
        return ids[:max_length]
    start = max(cut[0] - 1, 0) if cut[0] > 0 and text[cut[0] - 1] == " " else cut[0]
    before, field, after = (tok(part, add_special_tokens=False).input_ids
                            for part in (text[:start], text[start:cut[1]], text[cut[1]:]))
    keep = max_length - len(before) - len(after)
    return before + field[:keep] + after if keep >= 1 else ids[:max_length]


def _closed(ids: list[int], eos: int) -> list[int]:
    return ids if ids and ids[-1] == eos else [*ids, eos]


def collate(backbone: Backbone, items: Sequence[Encoded], task_ids: Sequence[int]) -> Batch:
    """Pad a list of encoded examples into a :class:`Batch` (dynamic padding to the longest row), on the LM's device."""
    pad = backbone.pad_id
    width_k = max((len(e.target_ids) for e in items), default=0)
    if backbone.is_encoder_decoder:
        width = max(len(e.input_ids) for e in items)
        ids = [list(e.input_ids) + [pad] * (width - len(e.input_ids)) for e in items]
        mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in items]
        input_mask = mask
        labels = [list(e.target_ids) + [IGNORE] * (width_k - len(e.target_ids)) for e in items]
    else:
        width = max(len(e) for e in items)
        ids, mask, input_mask, labels = [], [], [], []
        for e in items:
            n_pad = width - len(e)
            ids.append([pad] * n_pad + list(e.input_ids) + list(e.target_ids))
            mask.append([0] * n_pad + [1] * len(e))
            input_mask.append([0] * (n_pad + e.special) + [1] * (len(e.input_ids) - e.special) + [0] * len(e.target_ids))
            labels.append([IGNORE] * (width_k - len(e.target_ids)) + list(e.target_ids))
    device = backbone.model.device
    return Batch(
        task_ids=torch.tensor(list(task_ids), dtype=torch.long, device=device),
        input_ids=torch.tensor(ids, dtype=torch.long, device=device),
        attention_mask=torch.tensor(mask, dtype=torch.long, device=device),
        input_mask=torch.tensor(input_mask, dtype=torch.bool, device=device),
        labels=torch.tensor(labels, dtype=torch.long, device=device).reshape(len(items), width_k),
        tokens=sum(map(sum, mask)),
    )


def _prompted(backbone: Backbone, prompt: torch.Tensor, batch: Batch):
    """Input embeddings and mask with the prompt in front: (B, m+L, d), (B, m+L).

    ``prompt`` is (B, m, d), one per row, or (m, d), shared by every row.
    """
    embeds = backbone.embed(batch.input_ids)
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(len(batch), -1, -1)
    ones = torch.ones(prompt.shape[:2], dtype=batch.attention_mask.dtype, device=prompt.device)
    return torch.cat([prompt.to(embeds.dtype), embeds], dim=1), torch.cat([ones, batch.attention_mask], dim=1)


def _positions(mask: torch.Tensor, offset=0) -> torch.Tensor:
    """Position ids that skip padding: the first real token after ``offset`` positions gets ``offset``."""
    return (mask.cumsum(-1) - 1).clamp(min=0) + offset


@functools.lru_cache(maxsize=None)
def _cache_keyword(model_class: type) -> str:
    """``cache`` in newer transformers, ``past_key_values`` before; looked up once per model class."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _with_cache(model, cache) -> dict:
    """The keyword argument passing a KV cache to ``model``'s forward."""
    return {_cache_keyword(type(model)): cache}


@dataclass(frozen=True)
class Prefix:
    """Keys and values of each row's prompt, computed before the rows' tokens: per layer a pair of
    (B, heads, m, head_dim) tensors.

    A decoder-only LM's prompt states do not depend on the input, so a prompt that does not either (prompt
    tuning, SPoT, a source) is computed once (:func:`prompt_prefix`) and serves every row behind it: a
    training batch's (:func:`prefix_cache`), or every batch of a server (``attemptctl serve``), which joins
    the rows of several prompts with :meth:`join`.
    """

    states: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @property
    def length(self) -> int:
        """m, the prompt positions."""
        return self.states[0][0].shape[-2]

    def __len__(self) -> int:
        return self.states[0][0].shape[0]

    def rows(self, count: int) -> Prefix:
        """A one-row prefix for ``count`` rows (a view: no copy)."""
        return Prefix(tuple((k.expand(count, *k.shape[1:]), v.expand(count, *v.shape[1:])) for k, v in self.states))

    @staticmethod
    def join(parts: Sequence[Prefix]) -> Prefix:
        """The rows of ``parts`` in order, as one prefix (all of one prompt length)."""
        if len(parts) == 1:
            return parts[0]
        layers = zip(*(part.states for part in parts))
        return Prefix(tuple((torch.cat([k for k, _ in layer]), torch.cat([v for _, v in layer])) for layer in layers))

    def cache(self):
        """A fresh KV cache holding these states (a forward pass appends to the cache it is given)."""
        from transformers import DynamicCache

        return DynamicCache(self.states)


def prompt_prefix(backbone: Backbone, prompts: torch.Tensor) -> Prefix:
    """The keys/values of (P, m, d) prompts, each alone at positions 0..m-1: what any row behind it sees.
    Gradients flow back through them into the prompts."""
    count, m = prompts.shape[:2]
    positions = torch.arange(m, device=prompts.device).unsqueeze(0).expand(count, -1)
    out = backbone.model(inputs_embeds=prompts.to(backbone.model.dtype), position_ids=positions, use_cache=True,
                         logits_to_keep=1)
    return Prefix(tuple((layer[0], layer[1]) for layer in out.past_key_values))


def prefix_cache(backbone: Backbone, prompt: torch.Tensor, batch_size: int):
    """Keys/values of a shared (m, d) prompt, computed ONCE and repeated for ``batch_size`` rows.

    In a decoder-only LM the prompt comes first, so its hidden states do not depend on the input:
    computing them per row would repeat the same work B times. Gradients flow back through the
    cache into the prompt.
    """
    return prompt_prefix(backbone, prompt.unsqueeze(0)).rows(batch_size).cache()


def _prompt_length(prompt: torch.Tensor | Prefix) -> int:
    return prompt.length if isinstance(prompt, Prefix) else prompt.shape[-2]


def _decoder_forward(backbone: Backbone, prompt: torch.Tensor | Prefix, batch: Batch, keep: int,
                     use_cache: bool = False):
    """Decoder-only forward with the prompt in front; logits for the last ``keep`` positions only.

    ``prompt``: (B, m, d) per row; (m, d) shared by every row; or each row's ready :class:`Prefix`. A prompt of
    length 0 is the LM alone (recipes/headroom.py scores LoRA this way): there is no prefix to cache.
    """
    if (isinstance(prompt, Prefix) or prompt.dim() == 2) and _prompt_length(prompt) > 0:  # the prompt's keys/values first
        m = _prompt_length(prompt)
        cache = prompt.cache() if isinstance(prompt, Prefix) else prefix_cache(backbone, prompt, len(batch))
        mask = torch.cat([batch.attention_mask.new_ones(len(batch), m), batch.attention_mask], dim=1)
        return backbone.model(inputs_embeds=backbone.embed(batch.input_ids), attention_mask=mask,
                              position_ids=_positions(batch.attention_mask, m), use_cache=use_cache,
                              logits_to_keep=keep, **_with_cache(backbone.model, cache))
    embeds, mask = _prompted(backbone, prompt, batch)
    return backbone.model(inputs_embeds=embeds, attention_mask=mask, position_ids=_positions(mask),
                          logits_to_keep=keep, use_cache=use_cache)


def target_logits(backbone: Backbone, prompt: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Logits (B, K, V) predicting each of the K label positions — and only those.

    ``prompt`` is (B, m, d) per row, or (m, d) shared by every row (decoder-only models then
    compute it once per batch).
    """
    width_k = batch.labels.shape[1]
    if backbone.is_encoder_decoder:
        embeds, mask = _prompted(backbone, prompt, batch)
        # The decoder input is the labels shifted right, so position k predicts labels[:, k].
        out = backbone.model(inputs_embeds=embeds, attention_mask=mask, labels=batch.labels, use_cache=False)
        return out.logits
    out = _decoder_forward(backbone, prompt, batch, keep=width_k + 1)
    return out.logits[:, :-1]  # position L-1-k predicts token L-k; the last position predicts nothing


def token_logprobs(backbone: Backbone, prompt: torch.Tensor, batch: Batch) -> torch.Tensor:
    """log p(label token) at every label position (B, K); 0 where labels are IGNORE."""
    logits = target_logits(backbone, prompt, batch).float()
    labels = batch.labels
    picked = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(labels == IGNORE, 0.0)


def loss(backbone: Backbone, prompt: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over all target tokens of the batch (what training minimises)."""
    logits = target_logits(backbone, prompt, batch).float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def label_scores(backbone: Backbone, prompt: torch.Tensor | Prefix, items: Sequence[Encoded],
                 candidates: Sequence[Sequence[tuple[int, ...]]], scoring: str = "sum") -> list[list[float]]:
    """Each row's score for each of its candidate labels (rank classification), by ``scoring``:

    - ``sum``: log p(label tokens | prompt, input), the label's tokens and its EOS (favours short labels);
    - ``mean``: that sum over the number of tokens (length-normalised);
    - ``first``: log p of the label's first token alone.

    The input is encoded ONCE per row and shared by all its candidates: decoder-only models keep
    its keys/values and run only the label continuations; encoder-decoder models run the encoder
    once and the (short) decoder per candidate. Candidates end with EOS, as training targets do.
    """
    return [[row[scoring] for row in scored] for scored in label_score_table(backbone, prompt, items, candidates)]


@torch.no_grad()
def label_score_table(backbone: Backbone, prompt: torch.Tensor | Prefix, items: Sequence[Encoded],
                      candidates: Sequence[Sequence[tuple[int, ...]]]) -> list[list[dict[str, float]]]:
    """Every scoring of :func:`label_scores` from one pass: per row, per candidate ``{sum, mean, first}``.

    ``prompt`` is (B, m, d), (m, d) or, for a decoder-only LM, a :class:`Prefix` of B rows."""
    batch = collate(backbone, [Encoded(item.input_ids, (), item.special) for item in items], [0] * len(items))
    pairs = [(i, label) for i, row in enumerate(candidates) for label in row]
    owners = torch.tensor([i for i, _ in pairs], dtype=torch.long, device=batch.input_ids.device)
    labels = [label for _, label in pairs]
    if backbone.is_encoder_decoder:
        firsts, totals = _seq2seq_label_logprobs(backbone, prompt, batch, owners, labels)
    else:
        firsts, totals = _causal_label_logprobs(backbone, prompt, batch, owners, labels)
    scores: list[list[dict[str, float]]] = [[] for _ in items]
    for (i, label), first, total in zip(pairs, firsts.tolist(), totals.tolist()):
        scores[i].append({"sum": total, "mean": total / len(label), "first": first})
    return scores


def _padded(rows: Sequence[Sequence[int]], fill: int, device=None) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    return torch.tensor([list(r) + [fill] * (width - len(r)) for r in rows], dtype=torch.long,
                        device=device).reshape(len(rows), width)


def _causal_label_logprobs(backbone, prompt, batch, owners, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each label's first token, log p of all its tokens) per (row, label) pair."""
    out = _decoder_forward(backbone, prompt, batch, keep=1, use_cache=True)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)            # (B, V): the first label token
    device = owners.device
    firsts = first[owners, torch.tensor([label[0] for label in labels], device=device)]
    rest = [label[1:] for label in labels]
    if not any(rest):
        return firsts, firsts
    # Continue every (row, label) pair from the row's cached input with the label's tokens but the last.
    cache = out.past_key_values
    cache.batch_select_indices(owners)
    m = _prompt_length(prompt)
    past_mask = torch.cat([batch.attention_mask.new_ones(len(batch), m), batch.attention_mask], 1)[owners]
    feed = _padded([label[:-1] for label in labels], backbone.pad_id, device)  # (R, W)
    feed_mask = _padded([[1] * (len(label) - 1) for label in labels], 0, device)
    start = past_mask.sum(-1, keepdim=True)                                 # next position per row
    positions = start + torch.arange(feed.shape[1], device=device).unsqueeze(0)
    logits = backbone.model(inputs_embeds=backbone.embed(feed), attention_mask=torch.cat([past_mask, feed_mask], 1),
                            position_ids=positions, **_with_cache(backbone.model, cache)).logits.float()
    targets = _padded(rest, IGNORE, device)                                 # position k predicts token k+1
    picked = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return firsts, firsts + picked.masked_fill(targets == IGNORE, 0.0).sum(-1)


def _seq2seq_label_logprobs(backbone, prompt, batch, owners, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each label's first token, log p of all its tokens) per (row, label) pair."""
    embeds, mask = _prompted(backbone, prompt, batch)
    encoded = backbone.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    targets = _padded(labels, IGNORE, owners.device)
    logits = backbone.model(encoder_outputs=(encoded[owners],), attention_mask=mask[owners], labels=targets,
                            use_cache=False).logits.float()
    picked = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked[:, 0], picked.masked_fill(targets == IGNORE, 0.0).sum(-1)


@torch.no_grad()
def generate(backbone: Backbone, prompt: torch.Tensor, batch: Batch, max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding with the instance prompt in place; the batch must carry no targets."""
    embeds, mask = _prompted(backbone, prompt, batch)
    out = backbone.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  do_sample=False, num_beams=1, pad_token_id=backbone.pad_id,
                                  eos_token_id=backbone.eos_id)
    sequences = []
    for row in out.tolist():
        if backbone.is_encoder_decoder:
            row = row[1:]  # the decoder start token
        if backbone.eos_id in row:
            row = row[: row.index(backbone.eos_id)]
        sequences.append([t for t in row if t != backbone.pad_id])
    return sequences
