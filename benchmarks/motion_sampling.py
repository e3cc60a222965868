"""Motions generated per second: batched KV-cached sampling vs. the release's re-encode-everything sampler.

Same model for both (random weights, seed 0): the T2M-GPT structure scaled down for CPU (default: 256 wide,
4 + 4 blocks, 8 heads, 512 codes, 384-dim text feature, a 16-code MR_init prefix, 49 motion tokens). Every row
draws exactly `--tokens` tokens (end token disabled) so both samplers do the same work. The re-encode sampler
runs one sequence at a time (as the release's `sample()`), so its rate is measured on `--baseline-rows` rows and
holds for any batch; those rows' tokens are checked equal to the batched run's.

    .venv/bin/python benchmarks/motion_sampling.py [--batch 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from posesyn_core.motion.t2m_gpt import T2MGPT, T2MGPTConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=49)
    ap.add_argument("--embed", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4, help="blocks per half (base and head)")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--mrinit", type=int, default=16)
    ap.add_argument("--baseline-rows", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = T2MGPTConfig(num_vq=512, embed_dim=args.embed, clip_dim=384, num_layers=args.layers, n_head=args.heads,
                          mrinit_len=args.mrinit, block_size=1 + args.mrinit + args.tokens)  # fmt: skip
    model = T2MGPT(config).eval()
    feats = torch.randn(args.batch, 384)
    prefix = torch.randint(0, 512, (args.batch, args.mrinit))
    seeds = list(range(args.batch))
    kw = {"max_tokens": args.tokens, "stop_on_end": False, "top_k": 100, "temperature": 1.0}
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.1f}M parameters, embed {args.embed}, {args.layers}+{args.layers} blocks, "
          f"{args.heads} heads, prefix {args.mrinit}, {args.tokens} tokens/motion, {args.threads} CPU threads")

    model.sample(feats[:2], prefix[:2], seeds=seeds[:2], **kw)  # warm-up
    t = time.perf_counter()
    cached = model.sample(feats, prefix, seeds=seeds, **kw)
    cached_s = time.perf_counter() - t
    n = args.baseline_rows
    t = time.perf_counter()
    baseline = model.sample_uncached(feats[:n], prefix[:n], seeds=seeds[:n], **kw)
    baseline_s = time.perf_counter() - t
    assert baseline == cached[:n], "the two samplers disagree"
    fast, slow = args.batch / cached_s, n / baseline_s
    print(f"KV-cached batched (batch {args.batch}): {fast:8.2f} motions/s ({cached_s:.2f} s for {args.batch})")
    print(f"re-encode one at a time:          {slow:8.2f} motions/s ({baseline_s:.2f} s for {n})")
    print(f"speed-up: {fast / slow:.1f}x (target >= 20x); tokens identical on the {n} compared rows")


if __name__ == "__main__":
    main()
