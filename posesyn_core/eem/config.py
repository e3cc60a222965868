"""The `eem` stage's config section and spec (light: no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from posesyn_core.config import Resources, StageSection, StrictModel
from posesyn_core.skeleton import SMPL22
from posesyn_core.tpe.config import EstimatorRef


class JointWeights(StrictModel):
    """w_n of the EEM error per canonical joint group. The paper weighs arms and legs more (values unknown);
    2x is our default: limbs are where a wrong pose shows, the torso is nearly rigid."""

    torso: float = Field(1.0, ge=0, description="Pelvis, hips, spine, neck, collars, head.")
    arms: float = Field(2.0, ge=0, description="Shoulders, elbows, wrists.")
    legs: float = Field(2.0, ge=0, description="Knees, ankles, feet.")
    overrides: dict[str, float] = Field(
        default_factory=dict, description="Per-joint weights by SMPL22 name (e.g. left_wrist: 3.0); win over groups."
    )

    @field_validator("overrides")
    @classmethod
    def _known_joints(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(SMPL22))
        if unknown:
            raise ValueError(f"unknown joint name(s) {unknown}; use SMPL22 names, e.g. 'left_wrist'")
        if any(w < 0 for w in v.values()):
            raise ValueError("joint weights must be >= 0")
        return v


class EemSection(StageSection):
    """Run the TPE over a 2D dataset, score each sample with the root-relative weighted 2D error, rank."""

    added_keys = frozenset({"everyday_share", "keypoints2d", "keypoints_estimator", "alignment"})

    dataset: str = Field(
        "world/wild2d",
        description="The 2D pose dataset: a key under the run root, or a URL (file:///..., s3://...).",
    )
    estimator: EstimatorRef = Field(
        default_factory=EstimatorRef,
        description="The TPE: our checkpoint (default tpe-train/model.pt) or an external TorchScript/ONNX model.",
    )
    keypoints2d: Literal["gt", "estimated"] = Field(
        "gt", description="The 2D keypoints the TPE's projection is scored against: gt = the dataset's labels; "
        "estimated = `keypoints_estimator`'s 2D on the same crops (the labels are never read, for photo sets "
        "without them). Keypoints of any detector: import them as the dataset's labels (a COCO file) and keep gt."
    )  # fmt: skip
    keypoints_estimator: EstimatorRef | None = Field(
        None, description="keypoints2d estimated: the 2D estimator (same formats as `estimator`; its 3D output "
        "projected gives SMPL22 2D keypoints). It must not be the TPE itself: its own projection has no error."
    )  # fmt: skip
    batch_size: int = Field(64, ge=1, description="TPE inference batch size.")
    chunk_size: int = Field(512, ge=1, description="Samples per resumable chunk (the unit shards split).")
    num_challenging: int = Field(500, ge=1, description="K_C: size of the challenging (hard) set (paper: 500).")
    num_references: int = Field(
        200, ge=0, description="K_NC: lowest-error full-body samples kept as animation references (paper: 200)."
    )
    selection: Literal["eem", "random"] = Field(
        "eem", description="eem: the K_C largest errors; random: K_C random scorable samples (ablation)."
    )
    everyday_share: float = Field(
        0.0, ge=0, lt=1, description="selection eem: share of the K_C budget drawn at random from the samples "
        "below the cut (mostly everyday poses) instead of the next-largest errors, so fine-tuning on the failures "
        "does not unlearn the common poses; 0 = the paper's top K_C. No effect (set to 0) under selection random."
    )  # fmt: skip
    weights: JointWeights = Field(default_factory=JointWeights, description="Per-joint error weights w_n.")
    alignment: Literal["root", "similarity"] = Field(
        "root", description="root: the paper's root-relative error, which counts a wrong body orientation (upside "
        "down, tilted) in full; similarity: the prediction is first rotated and scaled in the image plane about the "
        "root to fit the keypoints, so the hard set is ranked by the articulation only (the 2D counterpart of "
        "PA-MPJPE); references stay the lowest root-relative errors. No effect (set to root) under selection random."
    )  # fmt: skip
    normalize_by_weight: bool = Field(
        True, description="Divide the weighted sum by the weight of the joints used (samples with few visible "
        "joints stay comparable); false = the paper's plain sum."
    )  # fmt: skip
    scale: Literal["bbox", "joints", "none"] = Field(
        "bbox", description="Divide by the person's 2D size: bbox = max(w, h) of the box, joints = long side "
        "of the visible GT joints' extent, none = pixels."
    )  # fmt: skip
    min_joints: int = Field(4, ge=1, description="Samples with fewer visible shared joints are not scored.")
    histogram_bins: int = Field(40, ge=5, description="Bins of the score histogram PNG.")

    @model_validator(mode="before")
    @classmethod
    def _ranking_keys_only_matter_to_eem_selection(cls, data: object) -> object:
        """A random draw ranks nothing: it has no cut to split and no use for the score's alignment. Dropping both
        keeps a run's random baseline (`eem.selection=random` over a config that sets them) the very stage it was
        without them: same fingerprint, nothing redone."""
        if isinstance(data, dict) and data.get("selection") == "random":
            data = {k: v for k, v in data.items() if k not in ("everyday_share", "alignment")}
        return data

    @model_validator(mode="after")
    def _estimated_keypoints_need_an_estimator(self) -> EemSection:
        if self.keypoints2d == "estimated" and self.keypoints_estimator is None:
            raise ValueError("eem.keypoints2d estimated: set eem.keypoints_estimator (a 2D keypoint estimator)")
        if self.keypoints2d == "estimated" and self.keypoints_estimator == self.estimator:
            raise ValueError("eem.keypoints_estimator: the TPE itself scores zero error against its own projection; "
                             "name another estimator")  # fmt: skip
        return self


def _spec():  # noqa: ANN202
    from posesyn_core.stages import StageSpec

    return StageSpec(
        name="eem",
        section=EemSection,
        run="posesyn_core.eem.stage:run",
        finalize="posesyn_core.eem.stage:finalize",
        description="Error Extraction Module: TPE over the 2D dataset, weighted 2D error, hard and reference sets.",
        inputs=("world", "tpe-train"),
        outputs=("scores.jsonl", "challenging.jsonl", "references.jsonl", "summary.json", "score_histogram.png"),
        resources=Resources(cpu="2", memory="4Gi"),
        gpu=True,
        shardable=True,
    )


SPEC = _spec()
