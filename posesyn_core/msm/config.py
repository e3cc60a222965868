"""The `msm` stage's config section and spec (light: no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from posesyn_core.config import Resources, StageSection, StrictModel
from posesyn_core.eem.pseudo_label import FitTo2d

Conditioning = Literal["text+mrinit", "text", "mrinit"]


class ConsistencyCheck(StrictModel):
    """Drop generated motions that drifted before they cost an animation: from their hard pose (the closest frame's
    PA-MPJPE to the pseudo-label fitted to the GT 2D) or from their caption (`msm.pipeline.caption_scores`: how
    much better the caption explains the motion than other poses' captions, in the motion model's own text
    space). Off by default (the paper keeps every motion); dropped motions are listed in `msm/dropped.jsonl`."""

    max_pose_mm: float | None = Field(None, gt=0, description="Drop motions whose closest frame is further than "
                                      "this from the hard pose (PA-MPJPE, mm); None: no pose check.")  # fmt: skip
    min_caption_score: float | None = Field(
        None, description="Drop motions whose caption score (log-likelihood per token under the caption minus under "
        "other poses' captions; 0: the caption explains the motion no better than others) is below this; None: no "
        "caption check (captions are not scored)."
    )  # fmt: skip
    distractors: int = Field(4, ge=1, description="Other poses' captions (from the same batch) each caption score "
                             "compares against.")  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.max_pose_mm is not None or self.min_caption_score is not None


class MsmSection(StageSection):
    """Sample motions around each hard pose with the motion model (T2M-GPT + MR_init prefix)."""

    added_keys = frozenset({"consistency"})

    model: str = Field("motion-train", description="Motion model: a prefix under the run root (motion-train's "
                       "output) or a URL of one.")  # fmt: skip
    conditioning: Conditioning = Field(
        "text+mrinit", description="text+mrinit (PoseSyn), text (no MR_init) or mrinit (no text), for the ablation."
    )
    num_motions: int = Field(4, ge=1, description="N: motions sampled per challenging sample.")
    num_frames: int = Field(64, ge=4, description="L: frames per motion at 20 fps (a multiple of 4).")
    fit_to_2d: FitTo2d = Field(
        "lift", description="Make each pseudo-label agree with its GT 2D before MR_init (eem/pseudo_label.py): none "
        "(the paper's raw pseudo-label), rotate (torso direction) or lift (rotate, then limbs re-lifted from the 2D)."
    )  # fmt: skip
    depth_signs: Literal["tpe", "motion-model"] = Field(
        "motion-model", description="Depth signs of the fitted pseudo-label's bones: tpe (the TPE's, as lifted) or "
        "motion-model (flipped where the motion model's VQ-VAE reproduces the pose better; msm/mrinit.py)."
    )  # fmt: skip
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_k: int | None = Field(None, ge=1, description="Keep only the k most likely codes per step (None: all).")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass (None: off).")
    batch_size: int = Field(32, ge=1, description="Challenging samples per sampler call (x num_motions sequences).")
    chunk_size: int = Field(32, ge=1, description="Challenging samples per resumable output part.")
    captions: Literal["cycle", "first"] = Field(
        "cycle", description="Which caption conditions motion k: cycle = caption k mod count, first = always the first."
    )
    consistency: ConsistencyCheck = Field(
        default_factory=ConsistencyCheck, description="Drop motions that drifted from their hard pose or caption."
    )

    @model_validator(mode="after")
    def _multiple_of_four(self) -> MsmSection:
        if self.num_frames % 4:
            raise ValueError("msm.num_frames: must be a multiple of 4 (the VQ-VAE downsamples time by 4)")
        if self.consistency.min_caption_score is not None and "text" not in self.conditioning:
            raise ValueError(f"msm.consistency.min_caption_score: conditioning {self.conditioning!r} has no caption "
                             "to score")  # fmt: skip
        return self


def _spec():  # noqa: ANN202
    from posesyn_core.stages import StageSpec

    return StageSpec(
        name="msm",
        section=MsmSection,
        run="posesyn_core.msm.stage:run",
        finalize="posesyn_core.msm.stage:finalize",
        description="Motion Synthesis Module: N motions per hard pose from its caption + MR_init, best frame kept.",
        inputs=("motion-train", "eem", "caption"),
        outputs=("motions/", "summary.json"),
        resources=Resources(cpu="2", memory="4Gi"),
        gpu=True,
        shardable=True,
    )


SPEC = _spec()
