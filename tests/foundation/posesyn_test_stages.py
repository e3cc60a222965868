"""Small real stages for testing the contract and the runners (registered through the `plugins:` key)."""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from posesyn_core.config import StageSection
from posesyn_core.pipeline import register
from posesyn_core.stages import StageContext, StageSpec


class DrawConfig(StageSection):
    chunks: int = Field(8, ge=1)
    items: int = Field(50_000, ge=1, description="numbers per chunk")
    sleep: float = Field(0.0, ge=0, description="seconds per chunk (to kill a run midway)")


def draw(ctx: StageContext) -> None:
    """Random chunks, one file each, resumable: existing chunks are kept."""
    progress = ctx.progress(ctx.config.chunks, "chunks")
    for k in range(ctx.config.chunks):
        key = ctx.key(f"chunk-{k:03d}.npz")
        if not ctx.store.exists(key):
            ctx.store.save_npz(key, x=ctx.rng(k).normal(size=ctx.config.items).astype(np.float32))
            time.sleep(ctx.config.sleep)
        progress.advance()
    ctx.counts["chunks"] = ctx.config.chunks


class TotalConfig(StageSection):
    scale: float = 1.0


def total(ctx: StageContext) -> None:
    keys = sorted(ctx.store.list(ctx.input_key("draw")))
    chunks = [ctx.store.load_npz(k)["x"] for k in keys if k.endswith(".npz")]
    ctx.store.write_json(ctx.key("total.json"), {"sum": float(np.sum(chunks)) * ctx.config.scale, "n": len(chunks)})


class SquareConfig(StageSection):
    n: int = 20
    bad_every: int = Field(0, ge=0, description="reject every k-th sample (0: none)")


def square(ctx: StageContext) -> None:
    rows = []
    for i in ctx.shard_slice(ctx.config.n):
        if ctx.config.bad_every and i % ctx.config.bad_every == 0:
            ctx.reject(f"s{i}", "divisible by bad_every")
            continue
        rows.append({"i": i, "sq": i * i})
    ctx.counts["samples_in"] = len(ctx.shard_slice(ctx.config.n))
    ctx.store.write_jsonl(ctx.key("rows.jsonl"), rows)


def square_finalize(ctx: StageContext) -> None:
    rows = [r for key in ctx.shard_keys("rows.jsonl") for r in ctx.store.read_jsonl(key)]
    ctx.store.write_jsonl(ctx.key("all.jsonl"), rows)
    ctx.counts["rows"] = len(rows)


register(StageSpec("draw", DrawConfig, run=f"{__name__}:draw", description="random chunks"))
register(StageSpec("total", TotalConfig, run=f"{__name__}:total", description="sum of draw", inputs=("draw",)))
register(StageSpec("square", SquareConfig, run=f"{__name__}:square", description="sharded squares",
                   shardable=True, finalize=f"{__name__}:square_finalize"))  # fmt: skip
