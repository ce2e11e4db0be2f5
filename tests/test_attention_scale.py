"""G's backbone-aware scale: the calibrated divisor and the standardised max-pool, against numpy
references; the paper's settings by name; what the registry records; and the spread on SmolLM2.

    paper:       a = softmax(P̂ · LN(W_up SiLU(W_down X̂)) / (d e^K)),           X̂ = maxpool(X)
    calibrated:  a = softmax(P̂ · LN(W_up SiLU(W_down X̃)) / (s e^K)),           X̃ = (X̂ - μ) / σ
                 μ, σ: per-dimension mean and std of X̂ over the sample; s: std of the per-input-centred
                 raw scores P̂ · H over the sample and the prompts (measured once, then stored)
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from typer.testing import CliRunner

from attemptctl.method.attention import AttentionModule
from attemptctl.workflows import payloads
from registry import Registry

D, RANK, M = 6, 3, 4
runner = CliRunner()


def _g(**settings) -> AttentionModule:
    torch.manual_seed(3)
    g = AttentionModule(D, rank=RANK, **settings)
    with torch.no_grad():
        g.norm.weight.copy_(torch.linspace(0.5, 1.5, D))
        g.norm.bias.copy_(torch.linspace(-0.2, 0.3, D))
    return g


def _sample(n: int = 12, length: int = 7, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, length, D, generator=gen) + torch.linspace(-1, 2, D)  # a common offset, as real embeddings have
    mask = torch.ones(n, length, dtype=torch.bool)
    for b in range(n):
        mask[b, length - b % 3:] = False
    prompts = torch.randn(5, M, D, generator=gen) * 2.0
    return x, mask, prompts


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def ref_pool(x, mask):
    return np.stack([x[b][mask[b]].max(axis=0) for b in range(len(x))])


def ref_h(g, pooled):
    z = pooled @ _np(g.down.weight).T
    z = z / (1 + np.exp(-z))
    u = z @ _np(g.up.weight).T
    u = (u - u.mean(-1, keepdims=True)) / np.sqrt(u.var(-1, keepdims=True) + g.norm.eps)
    return u * _np(g.norm.weight) + _np(g.norm.bias)


def ref_calibrated(g, x, mask, prompts, sample_x, sample_mask, k):
    """Weights (B, n) for inputs x from a G calibrated on the sample, all in numpy."""
    sample = ref_pool(_np(sample_x), _np(sample_mask).astype(bool))
    mu, sigma = sample.mean(0), sample.std(0, ddof=1)
    sigma = np.maximum(sigma, 1e-2 * sigma.mean() + 1e-12)
    keys = _np(prompts).max(axis=1)
    raw = ref_h(g, (sample - mu) / sigma) @ keys.T
    s = (raw - raw.mean(-1, keepdims=True)).std(ddof=1)
    scores = ref_h(g, (ref_pool(_np(x), _np(mask).astype(bool)) - mu) / sigma) @ keys.T / (s * math.e ** k)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True), s


@pytest.mark.parametrize("k", [0.0, 1.0, 2.5])
def test_calibrated_g_matches_the_numpy_reference(k):
    sample_x, sample_mask, prompts = _sample()
    x, mask, _ = _sample(4, seed=9)
    g = _g(temperature_k=k)
    g.calibrate(sample_x, sample_mask, prompts)
    want, s = ref_calibrated(g, x, mask, prompts, sample_x, sample_mask, k)
    np.testing.assert_allclose(g(x, mask, prompts).detach().numpy(), want, rtol=1e-4, atol=1e-6)
    assert float(g.divisor()) == pytest.approx(s * math.e ** k, rel=1e-4)


def test_calibration_gives_an_order_one_spread_and_the_paper_does_not():
    sample_x, sample_mask, prompts = _sample()
    calibrated, paper = _g(), _g(scale="paper", pooling="max")
    calibrated.calibrate(sample_x, sample_mask, prompts)
    paper.calibrate(sample_x, sample_mask, prompts)  # the paper's settings take nothing from the sample
    assert float(paper.divisor()) == pytest.approx(D * math.e) and torch.equal(paper.input_std, torch.ones(D))

    def spread(g):
        with torch.no_grad():
            scores = torch.log(g(sample_x, sample_mask, prompts))
        return float((scores - scores.mean(-1, keepdim=True)).std())

    assert spread(calibrated) == pytest.approx(math.exp(-1), rel=1e-3)  # s e^K with K = 1: spread e^-1 on the sample


def test_paper_settings_by_name_are_the_paper_formula():
    x, mask, prompts = _sample(5)
    g = _g(scale="paper", pooling="max", temperature_k=1.5)
    keys = _np(prompts).max(axis=1)
    scores = ref_h(g, ref_pool(_np(x), _np(mask).astype(bool))) @ keys.T / (D * math.e ** 1.5)
    want = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(g(x, mask, prompts).detach().numpy(), want / want.sum(-1, keepdims=True), rtol=1e-5,
                               atol=1e-7)


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="unknown attention scale"):
        AttentionModule(D, scale="huge")
    with pytest.raises(ValueError, match="unknown attention pooling"):
        AttentionModule(D, pooling="mean")


# --- what the registry keeps ------------------------------------------------------------------

class _Backbone:
    """What payloads.load_attention reads of a backbone: its d and fingerprint (a record, not our code)."""

    d = D
    name = "tiny"
    fingerprint = {"name": "tiny", "class": "X", "d": D, "vocab_size": 10, "config_sha256": "c", "embedding_sha256": "e"}


def _register(registry: Registry, payload: bytes, config: dict):
    return registry.register(kind="attention", name="g", task="rte", backbone="tiny", fingerprint=_Backbone.fingerprint,
                             d=D, m=0, payload=payload, variant="attempt", config=config)


def test_a_calibrated_g_comes_back_with_its_scale_and_statistics(tmp_path):
    sample_x, sample_mask, prompts = _sample()
    g = _g()
    g.calibrate(sample_x, sample_mask, prompts)
    registry = Registry(tmp_path / "registry")
    record = _register(registry, payloads.attention_payload(g), payloads.attention_settings(g))
    assert record.config["attn_scale"] == "calibrated" and record.config["attn_pool"] == "standardized-max"
    assert record.config["attn_divisor"] == pytest.approx(float(g.divisor()))
    loaded = payloads.load_attention(registry, record, _Backbone())
    assert torch.equal(loaded(sample_x, sample_mask, prompts), g(sample_x, sample_mask, prompts))


def test_a_g_registered_before_calibration_keeps_the_paper_scale(tmp_path):
    """Old payloads hold only the parameters and old records no settings: they were trained with d·e^K."""
    g = _g(scale="paper", pooling="max")
    old_payload = save_tensors({k: v.contiguous() for k, v in g.state_dict().items()
                                if k not in ("input_mean", "input_std", "score_scale")},
                               metadata={"rank": str(RANK), "temperature_k": "1.0"})
    registry = Registry(tmp_path / "registry")
    record = _register(registry, old_payload, {"temperature_k": 1.0})
    loaded = payloads.load_attention(registry, record, _Backbone())
    assert (loaded.scale, loaded.pooling) == ("paper", "max") and float(loaded.divisor()) == pytest.approx(D * math.e)
    x, mask, prompts = _sample(4)
    assert torch.allclose(loaded(x, mask, prompts), g(x, mask, prompts))


# --- end to end -------------------------------------------------------------------------------

SMALL = ["--max-steps", "2", "--train-limit", "12", "--dev-limit", "4", "--test-limit", "4", "--batch-size", "4",
         "--max-length", "40", "--eval-every", "2"]


def _cli(*args):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args])


def test_target_training_records_the_scale_it_used(tmp_path, real_data_dir, tiny_causal_dir):
    common = ["--registry", tmp_path / "r", "--data-dir", real_data_dir]
    for i, task in enumerate(("mnli", "qqp")):
        done = _cli("source", "train", task, *common, *(["--backbone", tiny_causal_dir] if i == 0 else []), *SMALL,
                    "--prompt-length", "4")
        assert done.exit_code == 0, done.output
    done = _cli("target", "train", "rte", "--sources", "mnli,qqp", *common, *SMALL)
    assert done.exit_code == 0, done.output
    done = _cli("target", "train", "rte", "--sources", "mnli,qqp", "--attn-scale", "paper", "--attn-pool", "max",
                "--attn-temperature", "2", *common, *SMALL)
    assert done.exit_code == 0, done.output
    registry = Registry(tmp_path / "r")
    calibrated, paper = registry.list(kind="attention")
    assert calibrated.config["attn_scale"] == "calibrated" and calibrated.config["attn_divisor"] < 64  # d = 64
    assert paper.config["attn_scale"] == "paper" and paper.config["attn_pool"] == "max"
    assert paper.config["attn_divisor"] == pytest.approx(64 * math.e ** 2)
    tensors = load_tensors(registry.load_payload(calibrated))
    assert float(tensors["input_std"].min()) > 0 and not torch.equal(tensors["input_mean"], torch.zeros(64))
    done = _cli("target", "train", "rte", "--sources", "mnli", "--attn-scale", "large", *common, *SMALL)
    assert done.exit_code == 1 and "unknown attn-scale 'large'" in done.output
    assert len(registry.list(kind="attention")) == 2


def test_on_smollm2_fresh_logits_spread_across_sources(smollm2_dir, real_data_dir):
    """Measured here before the fix: ~1e-3 with the paper's divisor on SmolLM2's small embeddings."""
    from attemptctl.method import lm
    from attemptctl.method.backbones import load_backbone
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task
    from attemptctl.workflows.runs import vocab_prompt

    backbone = load_backbone(str(smollm2_dir))
    rows = load_task(get_task("rte"), data_dir=real_data_dir, seed=42, train_limit=48).train
    batch = lm.collate(backbone, [lm.encode(backbone, e.input, None, 128) for e in rows], [0] * len(rows))
    prompts = torch.stack([vocab_prompt(backbone, 20, seed) for seed in range(6)])
    embeds = backbone.embed(batch.input_ids)
    spreads = {}
    for name, settings in {"calibrated": {}, "paper": dict(scale="paper", pooling="max")}.items():
        torch.manual_seed(0)
        g = AttentionModule(backbone.d, **settings)
        g.calibrate(embeds[:32], batch.input_mask[:32], prompts)
        with torch.no_grad():
            logits = torch.log(g(embeds[32:], batch.input_mask[32:], prompts))  # inputs the calibration never saw
        spreads[name] = float((logits - logits.mean(-1, keepdim=True)).std(-1).mean())
        spreads[name + " over inputs"] = float(logits.softmax(-1).std(0).max())
    assert spreads["calibrated"] >= 0.1 and spreads["paper"] < 0.01
    assert spreads["calibrated over inputs"] > 10 * spreads["paper over inputs"]
    print(json.dumps(spreads))


def test_g_learns_at_a_rate_that_suits_its_divisor():
    """Calibrated logits are not divided by d: G at the prompts' 0.3 saturated the softmax in 24 steps."""
    from attemptctl.engine.train import CALIBRATED_ATTN_LR, TrainConfig, _optimizer
    from attemptctl.method.mixture import PromptMixture

    mixture = PromptMixture({"rte": torch.zeros(M, D)}, sources={"s@1": torch.ones(M, D)},
                            attention=AttentionModule(D, rank=RANK), variant="attempt")

    def g_rate(config):
        return next(g["lr"] for g in _optimizer(mixture, config).param_groups if g["name"] == "attention")

    assert g_rate(TrainConfig(lr=0.3)) == CALIBRATED_ATTN_LR == TrainConfig(lr=0.3).to_dict()["attn_lr"]
    assert g_rate(TrainConfig(lr=0.3, attn_scale="paper")) == 0.3  # the paper: G at the prompts' rate
    assert g_rate(TrainConfig(lr=0.3, attn_lr=0.1)) == 0.1  # given: as given
    assert TrainConfig(**TrainConfig(lr=0.2).to_dict()) == TrainConfig(lr=0.2, attn_lr=CALIBRATED_ATTN_LR)
