"""Two small stages registered through the run config's `plugins:` key, so the chart and the images are
exercised on both kinds of stage Job whatever the built-in registry holds at the time:
- `toy-count` (CPU, one pod): writes `counts.json` with `n` numbers drawn from the stage's seeded generator;
- `toy-square` (GPU by default, shardable): each shard squares its slice of toy-count's numbers, the finalize
  step concatenates the shards into `squares.json`.
Importing this module registers both (what `plugins: [posesyn_toy_stages]` does in a pod).
"""

from __future__ import annotations

from pydantic import Field

from posesyn_core.config import Resources, StageSection
from posesyn_core.pipeline import register
from posesyn_core.stages import StageContext, StageSpec


class ToyCountSection(StageSection):
    n: int = Field(8, ge=1, description="How many numbers to draw.")


class ToySquareSection(StageSection):
    offset: int = Field(0, description="Added to every square.")


def count(ctx: StageContext) -> None:
    numbers = ctx.rng(0).integers(0, 100, size=ctx.config.n).tolist()
    ctx.store.write_json(ctx.key("counts.json"), numbers)
    ctx.counts["numbers"] = len(numbers)


def square(ctx: StageContext) -> None:
    numbers = ctx.store.read_json(ctx.input_key("toy-count", "counts.json"))
    mine = [numbers[i] ** 2 + ctx.config.offset for i in ctx.shard_slice(len(numbers))]
    ctx.store.write_json(ctx.key("part.json"), mine)
    ctx.counts["squares"] = len(mine)


def merge(ctx: StageContext) -> None:
    squares = [x for key in ctx.shard_keys("part.json") for x in ctx.store.read_json(key)]
    ctx.store.write_json(ctx.key("squares.json"), squares)


TOY_SPECS = [
    StageSpec(
        name="toy-count",
        section=ToyCountSection,
        run=f"{__name__}:count",
        description="Draws seeded numbers (test plugin)",
        outputs=("counts.json",),
        resources=Resources(cpu="100m", memory="256Mi"),
    ),
    StageSpec(
        name="toy-square",
        section=ToySquareSection,
        run=f"{__name__}:square",
        finalize=f"{__name__}:merge",
        description="Squares the numbers, sharded (test plugin)",
        inputs=("toy-count",),
        outputs=("squares.json",),
        resources=Resources(cpu="500m", memory="512Mi", gpu=1),
        gpu=True,
        shardable=True,
    ),
]

for _spec in TOY_SPECS:
    register(_spec)
