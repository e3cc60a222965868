"""The `filter` stage: its config section and spec (light module: no torch at import)."""

from __future__ import annotations

from pydantic import Field

from posesyn_core.config import Resources, StageSection
from posesyn_core.stages import StageSpec
from posesyn_core.tpe.config import EstimatorRef


class FilterSection(StageSection):
    """Drop synthetic frames whose TPE prediction disagrees with their label by more than tau."""

    dataset: str = Field("animate/dataset", description="Pose dataset of generated frames to filter.")
    estimator: EstimatorRef = Field(
        default_factory=EstimatorRef, description="The TPE judging the frames (paper: the TPE being improved)."
    )
    tau_mm: float | None = Field(
        120.0, gt=0, description="Keep frames whose root-relative mean per-joint error <= tau; null keeps every frame "
        "(errors are still measured and reported), for backends whose labels are exact by construction."
    )  # fmt: skip
    batch_size: int = Field(128, ge=1, description="Frames per TPE batch.")
    histogram_bins: int = Field(40, ge=2, description="Bins of the error histogram figure.")
    frames_per_part: int = Field(2000, ge=1, description="Kept frames per output dataset part.")


SPEC = StageSpec(
    name="filter",
    section=FilterSection,
    run="posesyn_core.filter.stage:run",
    finalize="posesyn_core.filter.stage:finalize",
    description="Run the TPE on every generated frame and keep those within tau (mm, root-relative mean per-joint "
    "error) of their label, as a pose dataset ready for fine-tuning.",
    inputs=("animate", "tpe-train"),
    outputs=("dataset/", "errors.jsonl", "error_histogram.png", "summary.json"),
    resources=Resources(cpu="2", memory="4Gi"),
    shardable=True,
)
