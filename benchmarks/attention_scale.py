"""Why G's attention was flat on SmolLM2: the divisor, or max-pooling? Measured at initialisation.

Takes real inputs (RTE and BoolQ training rows), six prompts (vocabulary-initialised, or zoo sources
with --zoo) and a fresh G, and prints, for each pooling and divisor: the share of the pooled input's
energy that depends on the input, the spread of the logits across sources and across inputs, and
how much each column's weight varies across inputs. Calibration statistics come from a disjoint
sample of training inputs, as `target train` takes them.

    python benchmarks/attention_scale.py --data-dir DIR [--zoo] [--rows 32]
"""

from __future__ import annotations

import argparse
import math


def main() -> None:
    import torch

    from attemptctl.method import lm
    from attemptctl.method.attention import AttentionModule, masked_maxpool
    from attemptctl.method.backbones import load_backbone
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task
    from attemptctl.workflows.runs import vocab_prompt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rows", type=int, default=32, help="measured inputs (half RTE, half BoolQ)")
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--zoo", action="store_true", help="the zoo's source prompts instead of vocabulary ones")
    args = parser.parse_args()
    backbone = load_backbone("smollm2-135m")

    def batch(start: int, n: int):
        rows = [r for name in ("rte", "boolq")
                for r in load_task(get_task(name), data_dir=args.data_dir, seed=42).train[start:start + n // 2]]
        encoded = lm.collate(backbone, [lm.encode(backbone, e.input, None, 128) for e in rows], [0] * len(rows))
        return backbone.embed(encoded.input_ids).detach(), encoded.input_mask

    x, mask = batch(0, args.rows)
    sample_x, sample_mask = batch(1000, 64)
    if args.zoo:
        from safetensors.torch import load as load_tensors

        from attemptctl.zoo import load_manifest, zoo_dir

        entries = load_manifest("smollm2-135m")["prompts"].values()
        prompts = torch.stack([load_tensors((zoo_dir("smollm2-135m") / e["file"]).read_bytes())["prompt"]
                               for e in entries])
    else:
        prompts = torch.stack([vocab_prompt(backbone, args.m, seed) for seed in range(6)])
    print(f"SmolLM2-135M (d = {backbone.d}): {len(x)} inputs, {len(prompts)} prompts of m = {prompts.shape[1]}")
    with torch.no_grad():
        pooled = masked_maxpool(x, mask)
        keys = prompts.max(dim=1).values
        for name, value in (("max-pooled input X^", pooled), ("max-pooled prompts P^", keys)):
            centred = value - value.mean(0)
            share = float((centred.pow(2).sum(1) / value.pow(2).sum(1)).mean())
            print(f"  {name}: {100 * share:.1f}% of the energy differs between rows")
        print(f"{'pooling':17} {'divisor':11} {'raw std':>8} {'spread/sources':>15} {'spread/inputs':>14} "
              f"{'weight std':>11} {'max-min':>8}")
        for pooling, scale in (("max", "paper"), ("max", "calibrated"), ("standardized-max", "paper"),
                               ("standardized-max", "calibrated")):
            torch.manual_seed(0)
            g = AttentionModule(backbone.d, scale=scale, pooling=pooling)
            g.calibrate(sample_x, sample_mask, prompts)
            raw = g.query(x, mask) @ keys.T
            logits = raw / g.divisor()
            centred = logits - logits.mean(-1, keepdim=True)
            weights = logits.softmax(-1)
            print(f"{pooling:17} {scale:11} {float(raw.std()):8.3f} {float(centred.std(1).mean()):15.4f} "
                  f"{float(centred.std(0).mean()):14.4f} {float(weights.std(0).mean()):11.2e} "
                  f"{float((weights.max(0).values - weights.min(0).values).max()):8.3f}")
        print(f"(paper divisor d·e^K = {backbone.d * math.e:.0f}; K = 1)")


if __name__ == "__main__":
    main()
