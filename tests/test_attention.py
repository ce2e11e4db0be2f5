"""G, the mixing formula and the PromptMixture variants against independent reference computations.

The references are written in numpy from DESIGN §1, never by calling the code under test:

    X̂ = maxpool(non-padding input)   P̂_j = maxpool_m(P_j)   H = LN(W_up SiLU(W_down X̂))
    a = softmax(P̂ · H / (d e^K))      P_instance = P_target + Σ_j a_j P_j
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attemptctl.method.attention import AttentionModule, masked_maxpool, mix_prompts
from attemptctl.method.mixture import TARGET_COLUMN, PromptMixture

D, RANK, M = 6, 3, 4


# --- independent numpy reference --------------------------------------------------------------


def ref_maxpool(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(L, d), (L,) -> (d,): max over the positions where mask is true."""
    return x[mask.astype(bool)].max(axis=0)


def ref_query(g: AttentionModule, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w_down = g.down.weight.detach().double().numpy()          # (r, d)
    w_up = g.up.weight.detach().double().numpy()              # (d, r)
    gamma = g.norm.weight.detach().double().numpy()
    beta = g.norm.bias.detach().double().numpy()
    z = w_down @ ref_maxpool(x.astype(np.float64), mask)
    z = z / (1.0 + np.exp(-z))                                 # SiLU
    u = w_up @ z
    mean, var = u.mean(), u.var()                              # LayerNorm: biased variance, eps 1e-5
    return (u - mean) / np.sqrt(var + g.norm.eps) * gamma + beta


def ref_weights(g: AttentionModule, x: np.ndarray, mask: np.ndarray, prompts: np.ndarray,
                allowed: np.ndarray | None = None, k: float = 1.0) -> np.ndarray:
    """One row: prompts (n, m, d) -> softmax weights (n,), over the allowed slots only."""
    h = ref_query(g, x, mask)
    keys = prompts.astype(np.float64).max(axis=1)              # (n, d)
    scores = keys @ h / (g.d * math.e ** k)
    allowed = np.ones(len(scores), bool) if allowed is None else allowed.astype(bool)
    out = np.zeros_like(scores)
    s = scores[allowed]
    e = np.exp(s - s.max())
    out[allowed] = e / e.sum()
    return out


def explicit_g(d: int = D, rank: int = RANK) -> AttentionModule:
    """G with small, explicit, non-default weights (LayerNorm affine included)."""
    g = AttentionModule(d, rank=rank)
    with torch.no_grad():
        g.down.weight.copy_(torch.arange(rank * d, dtype=torch.float32).reshape(rank, d).sin() * 0.7)
        g.up.weight.copy_(torch.arange(d * rank, dtype=torch.float32).reshape(d, rank).cos() * 0.9)
        g.norm.weight.copy_(torch.linspace(0.5, 1.5, d))
        g.norm.bias.copy_(torch.linspace(-0.2, 0.3, d))
    return g


def inputs(batch: int = 3, length: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, D, generator=gen)
    mask = torch.ones(batch, length, dtype=torch.bool)
    for b in range(batch):
        mask[b, length - b:] = False  # row b has b padded positions at the end
    return x, mask


def prompts_t(n: int, seed: int = 1, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(n, M, D, generator=torch.Generator().manual_seed(seed)) * scale


# --- G ----------------------------------------------------------------------------------------


def test_g_matches_hand_computation_at_fixed_seed():
    g = explicit_g()
    x, mask = inputs()
    prompts = prompts_t(4)
    got = g(x, mask, prompts).detach().numpy()
    want = np.stack([ref_weights(g, x[b].numpy(), mask[b].numpy(), prompts.numpy()) for b in range(len(x))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The weights must actually differ between rows and from uniform, or the check above proves little.
    assert np.abs(want - 1 / 4).max() > 1e-2
    assert np.abs(want[0] - want[1]).max() > 1e-3


def test_g_query_is_layernorm_of_up_silu_down():
    g = explicit_g()
    x, mask = inputs()
    got = g.query(x, mask).detach().numpy()
    want = np.stack([ref_query(g, x[b].numpy(), mask[b].numpy()) for b in range(len(x))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_temperature_divides_scores_by_d_e_to_the_k():
    g = explicit_g()
    g.temperature_k = 2.0
    x, mask = inputs()
    prompts = prompts_t(3)
    got = g(x, mask, prompts).detach().numpy()
    want = np.stack([ref_weights(g, x[b].numpy(), mask[b].numpy(), prompts.numpy(), k=2.0) for b in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_masked_maxpool_padding_never_wins():
    x = -torch.rand(2, 4, D) - 1.0             # every real value is in [-2, -1]
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    x[~mask] = 1e9                              # padded positions hold huge values
    pooled = masked_maxpool(x, mask)
    assert torch.equal(pooled[0], torch.maximum(x[0, 0], x[0, 1]))
    assert torch.equal(pooled[1], torch.maximum(x[1, 0], x[1, 2]))
    assert (pooled < 0).all()
    # Zero padding must not win either (values all negative): the paper's bug.
    x[~mask] = 0.0
    assert (masked_maxpool(x, mask) < 0).all()


def test_g_ignores_whatever_sits_at_padded_positions():
    g = explicit_g()
    x, mask = inputs()
    prompts = prompts_t(3)
    clean = g(x, mask, prompts)
    dirty = x.clone()
    dirty[~mask] = 1e6
    assert torch.equal(g(dirty, mask, prompts), clean)


def test_softmax_is_over_t_plus_1_slots_and_sums_to_one():
    g = explicit_g()
    x, mask = inputs()
    t = 5
    sources, target = prompts_t(t), prompts_t(3, seed=7)[:3]
    per_row = torch.cat([sources.unsqueeze(0).expand(3, -1, -1, -1), target.unsqueeze(1)], dim=1)  # (B, t+1, m, d)
    a = g(x, mask, per_row)
    assert a.shape == (3, t + 1)
    torch.testing.assert_close(a.sum(-1), torch.ones(3))
    assert (a > 0).all()
    want = np.stack([ref_weights(g, x[b].numpy(), mask[b].numpy(), per_row[b].numpy()) for b in range(3)])
    np.testing.assert_allclose(a.detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_prompt_mask_gives_exactly_zero_weight():
    g = explicit_g()
    x, mask = inputs()
    prompts = prompts_t(4)
    slots = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.bool)
    a = g(x, mask, prompts, slots)
    assert (a[~slots] == 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(3))
    assert a[1, 3].item() == 1.0
    want = np.stack([ref_weights(g, x[b].numpy(), mask[b].numpy(), prompts.numpy(), slots[b].numpy())
                     for b in range(3)])
    np.testing.assert_allclose(a.detach().numpy(), want, rtol=1e-5, atol=1e-6)


# --- mix_prompts ------------------------------------------------------------------------------


def test_mix_prompts_is_target_plus_weighted_sum():
    gen = torch.Generator().manual_seed(3)
    sources = torch.randn(3, M, D, generator=gen)
    target = torch.randn(2, M, D, generator=gen)
    all_prompts = torch.cat([sources.unsqueeze(0).expand(2, -1, -1, -1), target.unsqueeze(1)], dim=1)
    weights = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.25]])
    mixed = mix_prompts(weights, all_prompts, target)
    for b in range(2):
        want = target[b] + sum(weights[b, j] * all_prompts[b, j] for j in range(4))
        torch.testing.assert_close(mixed[b], want)
        # The target's own total weight is 1 + a_{t+1}.
        want_split = (1 + weights[b, 3]) * target[b] + sum(weights[b, j] * sources[j] for j in range(3))
        torch.testing.assert_close(mixed[b], want_split)
    # Shared (n, m, d) prompts give the same as the per-row (B, n, m, d) form.
    shared = mix_prompts(weights[:, :3], sources, None)
    per_row = mix_prompts(weights[:, :3], sources.unsqueeze(0).expand(2, -1, -1, -1), None)
    torch.testing.assert_close(shared, per_row)
    torch.testing.assert_close(shared[1], 0.5 * sources[0] + 0.25 * sources[2])


# --- PromptMixture variants -------------------------------------------------------------------


def _parts(t: int = 3, tasks=("rte",), seed: int = 11):
    gen = torch.Generator().manual_seed(seed)
    sources = {f"src{j}@1": torch.randn(M, D, generator=gen) * 2 for j in range(t)}
    targets = {task: torch.randn(M, D, generator=gen) for task in tasks}
    return sources, targets


def test_prompt_tuning_returns_the_task_prompt_and_no_weights():
    _, targets = _parts(tasks=("rte", "cb"))
    mixture = PromptMixture(targets)
    prompt, weights = mixture(torch.tensor([1, 0, 1]))
    assert weights is None
    assert torch.equal(prompt[0], targets["cb"])
    assert torch.equal(prompt[1], targets["rte"])
    assert torch.equal(prompt[2], targets["cb"])


def test_attempt_matches_the_manual_formula():
    sources, targets = _parts(t=3)
    mixture = PromptMixture(targets, sources=sources, attention=explicit_g(), variant="attempt")
    assert mixture.columns == [*sources, TARGET_COLUMN]
    x, mask = inputs()
    prompt, weights = mixture(torch.zeros(3, dtype=torch.long), x, mask)
    assert weights.shape == (3, 4)
    p_target = targets["rte"].numpy().astype(np.float64)
    stacked = np.stack([*(s.numpy() for s in sources.values()), targets["rte"].numpy()])   # (t+1, m, d)
    for b in range(3):
        a = ref_weights(mixture.attention, x[b].numpy(), mask[b].numpy(), stacked)
        np.testing.assert_allclose(weights[b].detach().numpy(), a, rtol=1e-5, atol=1e-6)
        want = p_target + np.einsum("n,nmd->md", a, stacked)
        np.testing.assert_allclose(prompt[b].detach().numpy(), want, rtol=1e-5, atol=1e-5)
        # Target weight 1 + a_{t+1}.
        want_split = (1 + a[-1]) * p_target + np.einsum("n,nmd->md", a[:-1], stacked[:-1])
        np.testing.assert_allclose(prompt[b].detach().numpy(), want_split, rtol=1e-5, atol=1e-5)


def test_uniform_weights_are_one_over_t_and_prompt_is_target_plus_mean():
    sources, targets = _parts(t=4, tasks=("rte", "cb"))
    task_sources = {"rte": ["src0@1", "src1@1", "src2@1", "src3@1"], "cb": ["src1@1", "src3@1"]}
    mixture = PromptMixture(targets, sources=sources, task_sources=task_sources, variant="uniform")
    assert mixture.attention is None
    x, mask = inputs(batch=2)
    prompt, weights = mixture(torch.tensor([0, 1]), x, mask)
    torch.testing.assert_close(weights[0], torch.tensor([0.25, 0.25, 0.25, 0.25, 0.0]))
    torch.testing.assert_close(weights[1], torch.tensor([0.0, 0.5, 0.0, 0.5, 0.0]))
    torch.testing.assert_close(prompt[0], targets["rte"] + torch.stack(list(sources.values())).mean(0))
    torch.testing.assert_close(prompt[1], targets["cb"] + (sources["src1@1"] + sources["src3@1"]) / 2)


def test_no_target_mixes_sources_only():
    sources, targets = _parts(t=3)
    mixture = PromptMixture(targets, sources=sources, attention=explicit_g(), variant="no-target")
    x, mask = inputs()
    prompt, weights = mixture(torch.zeros(3, dtype=torch.long), x, mask)
    assert (weights[:, -1] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    src = np.stack([s.numpy() for s in sources.values()])
    for b in range(3):
        a = ref_weights(mixture.attention, x[b].numpy(), mask[b].numpy(), src)   # softmax over sources only
        np.testing.assert_allclose(weights[b, :-1].detach().numpy(), a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(prompt[b].detach().numpy(), np.einsum("n,nmd->md", a, src), rtol=1e-5, atol=1e-5)


def test_rows_of_different_tasks_get_their_own_prompt_and_sources():
    sources, targets = _parts(t=3, tasks=("rte", "cb"))
    g = explicit_g()
    task_sources = {"rte": ["src0@1", "src2@1"], "cb": ["src1@1"]}
    mixture = PromptMixture(targets, sources=sources, task_sources=task_sources, attention=g, variant="attempt")
    x, mask = inputs()
    task_ids = torch.tensor([0, 1, 0])
    prompt, weights = mixture(task_ids, x, mask)
    # Slots a row's task does not mix get exactly zero.
    assert weights[0, 1] == 0 and weights[2, 1] == 0
    assert weights[1, 0] == 0 and weights[1, 2] == 0
    for b, task in enumerate(["rte", "cb", "rte"]):
        # Same row, mixture holding only this task and its sources, same G: identical result.
        alone = PromptMixture({task: targets[task]}, sources={r: sources[r] for r in task_sources[task]},
                              attention=g, variant="attempt")
        p_alone, a_alone = alone(torch.tensor([0]), x[b:b + 1], mask[b:b + 1])
        torch.testing.assert_close(prompt[b], p_alone[0])
        cols = [mixture.columns.index(c) for c in alone.columns]
        torch.testing.assert_close(weights[b, cols], a_alone[0])
    # A task prompt's gradient comes only from its own rows.
    prompt[1].sum().backward()
    assert mixture.task_prompt("rte").grad.abs().max() == 0
    assert mixture.task_prompt("cb").grad.abs().max() > 0


@pytest.mark.parametrize("variant", ["attempt", "uniform", "no-target"])
def test_source_prompts_are_frozen_buffers(variant):
    sources, targets = _parts(t=3)
    mixture = PromptMixture(targets, sources=sources, attention=explicit_g(), variant=variant)
    names = [n for n, _ in mixture.named_parameters()]
    assert not any("source" in n for n in names)
    assert all(p is not mixture.source_prompts for p in mixture.parameters())
    assert "source_prompts" in dict(mixture.named_buffers())
    before = mixture.source_prompts.clone()
    assert not mixture.source_prompts.requires_grad
    x, mask = inputs()
    prompt, _ = mixture(torch.zeros(3, dtype=torch.long), x, mask)
    (prompt ** 2).sum().backward()
    assert mixture.source_prompts.grad is None
    optimizer = torch.optim.AdamW(mixture.parameters(), lr=0.5)
    optimizer.step()
    assert torch.equal(mixture.source_prompts, before)
    if variant != "no-target":
        assert mixture.task_prompt("rte").grad.abs().max() > 0


def test_g_parameter_count_does_not_depend_on_the_number_of_sources():
    counts = set()
    g = explicit_g()
    x, mask = inputs()
    for t in (1, 2, 6):
        sources, targets = _parts(t=t)
        mixture = PromptMixture(targets, sources=sources, attention=AttentionModule(D, rank=RANK), variant="attempt")
        counts.add(sum(p.numel() for p in mixture.attention.parameters()))
        # The very same G scores any number of sources.
        stacked = torch.cat([torch.stack(list(sources.values())), targets["rte"][None]])
        assert g(x, mask, stacked).shape == (3, t + 1)
    assert counts == {2 * D * RANK + 2 * D}


# --- G's LayerNorm: trained or frozen (issue 28) --------------------------------------------------

@pytest.mark.parametrize("norm", ["trained", "frozen"])
def test_a_frozen_layernorm_stays_at_its_identity_and_is_recorded(tmp_path, real_data_dir, tiny_causal_dir, norm):
    """`--attn-norm frozen` keeps G's LayerNorm at weight 1, bias 0 through training (the official code);
    trained, its bias moves. The registered module says which, and loads back the same way."""
    import torch
    from safetensors.torch import load as load_bytes
    from typer.testing import CliRunner

    from attemptctl.cli import app
    from attemptctl.method.backbones import load_backbone
    from attemptctl.workflows import payloads
    from registry import Registry

    common = ["--registry", tmp_path / "reg", "--data-dir", real_data_dir, "--max-steps", "3", "--train-limit", "16",
              "--dev-limit", "8", "--test-limit", "8", "--batch-size", "4", "--max-length", "32", "--warmup-steps", "0"]
    runner = CliRunner()
    for task in ("mnli", "qqp"):
        result = runner.invoke(app, [str(a) for a in ["source", "train", task, "--backbone", tiny_causal_dir,
                                                      "--prompt-length", "4", *common]])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, [str(a) for a in ["target", "train", "rte", "--sources", "mnli,qqp", "--attn-norm", norm,
                                                  "--attn-lr", "0.1", *common]])
    assert result.exit_code == 0, result.output
    registry = Registry(tmp_path / "reg")
    record = registry.get("attention", registry.get("target", "rte").attention)
    assert record.config["attn_norm"] == norm
    stored = load_bytes(registry.load_payload(record))
    identity = torch.equal(stored["norm.weight"], torch.ones_like(stored["norm.weight"])) and \
        torch.equal(stored["norm.bias"], torch.zeros_like(stored["norm.bias"]))
    assert identity == (norm == "frozen")
    module = payloads.load_attention(registry, record, load_backbone(str(tiny_causal_dir), device="cpu"))
    assert module.norm_mode == norm and module.norm.weight.requires_grad == (norm == "trained")


def test_an_unknown_attn_norm_is_one_clear_error():
    from attemptctl.engine.train import TrainConfig
    from attemptctl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown attn-norm 'sometimes'; choose one of trained, frozen"):
        TrainConfig(attn_norm="sometimes")
