"""The run config's `loop` section (light: no torch): how many rounds `posesyn experiment loop` runs and when it
stops early."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posesyn_core.config import StrictModel


class LoopSection(StrictModel):
    """Rounds of EEM -> synthesis -> fine-tuning, each starting from the TPE the round before fine-tuned."""

    rounds: int = Field(3, ge=1, description="Rounds, the run itself being round 1 (`--rounds` overrides).")
    min_gain: float | None = Field(
        0.01, description="Stop early after a round that lowered `metric` on `test_set` by less than this "
        "fraction of the round before's error (null: run every round)."
    )  # fmt: skip
    test_set: str = Field("world/wild_test", description="The evaluate test set the stopping rule watches.")
    metric: Literal["mpjpe", "pa_mpjpe"] = Field("mpjpe", description="The error the stopping rule watches.")
