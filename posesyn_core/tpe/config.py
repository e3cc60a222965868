"""Config sections and stage declarations of the TPE stages (`tpe-train`, `finetune`, `evaluate`), plus the
`estimator` reference other stages (eem, filter) embed to name the estimator they run. No torch import here:
loading a run config must stay fast."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from posesyn_core.config import Resources, StageSection, StrictModel
from posesyn_core.stages import StageSpec


class EstimatorRef(StrictModel):
    """Which pose estimator an inference stage runs. `posesyn`: a checkpoint written by tpe-train/finetune;
    `torchscript`/`onnx`: an external model with the same contract (input `images` float32 (B, 3, S, S) RGB in
    [0, 1]; outputs `joints3d` (B, 22, 3) root-relative camera-frame metres (SMPL22 order) and `cam` (B, 3)
    weak perspective s, tx, ty)."""

    kind: Literal["posesyn", "torchscript", "onnx"] = Field("posesyn", description="Model format.")
    path: str = Field("tpe-train/model.pt", description="Key under the run root, a URL, or a local file path.")
    img_size: int | None = Field(
        None, ge=16, description="Crop side S of an external model (default: its embedded metadata, else 64)."
    )
    crop_pad: float | None = Field(
        None, gt=0, description="Crop side / max(bbox w, h) of an external model (default: metadata, else 1.2)."
    )


class ModelSection(StrictModel):
    """Architecture of a TPE trained from scratch (a fine-tune takes it from its checkpoint)."""

    img_size: int = Field(64, ge=16, description="Square crop side in pixels (divisible by 2**len(widths)).")
    crop_pad: float = Field(1.2, gt=0, description="Crop side = crop_pad * max(bbox w, h).")
    widths: list[int] = Field([16, 32, 64, 128], min_length=1, description="Channels per CNN stage.")
    head_dim: int = Field(512, ge=8, description="Hidden width of the regression head.")
    loss_3d: float = Field(1.0, ge=0, description="Weight of the root-relative 3D L1 loss.")
    loss_2d: float = Field(1.0, ge=0, description="Weight of the 2D reprojection L1 loss.")


class AugmentSection(StrictModel):
    flip: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip (with joint swap).")
    scale: float = Field(0.15, ge=0, lt=1, description="Zoom jitter: factor in [1 - scale, 1 + scale].")
    translate: float = Field(0.08, ge=0, le=0.5, description="Shift jitter in fractions of the crop side.")
    color: float = Field(0.3, ge=0, lt=1, description="Brightness/contrast/saturation jitter.")


class TrainingSection(StageSection):
    """Keys shared by tpe-train and finetune (the same training loop)."""

    steps: int = Field(1500, ge=1, description="Optimizer steps (1500 x 64 = 12 epochs of the demo lab3d).")
    batch_size: int = Field(64, ge=1, description="Samples per step.")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW, linear warmup, cosine decay).")
    warmup: int = Field(50, ge=0, description="Warmup steps.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay (not on norms and biases).")
    augment: AugmentSection = Field(default_factory=AugmentSection, description="Augmentation ranges.")
    checkpoint_every: int = Field(200, ge=1, description="Steps between resumable checkpoints.")
    log_every: int = Field(25, ge=1, description="Steps between loss-log rows.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many samples per dataset.")


class TPETrainSection(TrainingSection):
    datasets: list[str] = Field(
        ["world/lab3d"], min_length=1, description="Training datasets (keys under the root or URLs); 2D-only "
        "datasets are supervised by reprojection."
    )  # fmt: skip
    model: ModelSection = Field(default_factory=ModelSection, description="Architecture.")


class FinetuneSection(TrainingSection):
    checkpoint: str = Field("tpe-train/model.pt", description="TPE checkpoint to start from.")
    real: list[str] = Field(["world/lab3d"], min_length=1, description="Real datasets (3D and/or 2D-only).")
    synthetic: str | None = Field(
        "filter/dataset", description="Synthetic dataset; `none` = fine-tune on real data only (the baseline)."
    )
    synthetic_fraction: float = Field(
        0.5, ge=0, le=1, description="Fraction of each batch from synthetic data (ignored when synthetic is none)."
    )
    steps: int = Field(600, ge=1, description="Optimizer steps (the same for the real-only baseline).")
    lr: float = Field(5e-4, gt=0, description="Peak learning rate.")
    warmup: int = Field(20, ge=0, description="Warmup steps.")

    @field_validator("synthetic", mode="before")
    @classmethod
    def _none(cls, v: object) -> object:
        return None if isinstance(v, str) and v.lower() == "none" else v


class EvaluateSection(StageSection):
    checkpoints: dict[str, str] = Field(
        {"tpe": "tpe-train/model.pt", "finetuned": "finetune/model.pt"},
        description="Named checkpoints to compare (keys under the root or URLs); missing ones are skipped with "
        "a warning, at least one must exist.",
    )  # fmt: skip
    estimators: dict[str, EstimatorRef] = Field(
        default_factory=dict, description="Further named estimators (TorchScript/ONNX models) to evaluate."
    )
    test_sets: list[str] = Field(
        ["world/wild_test", "world/lab3d_test"], min_length=1, description="Test datasets."
    )
    pck_alpha: float = Field(0.1, gt=0, description="PCK threshold: alpha * max(bbox w, h).")
    batch_size: int = Field(64, ge=1, description="Inference batch size.")
    max_samples: int | None = Field(None, ge=1, description="Evaluate at most this many samples per test set.")


TPE_TRAIN = StageSpec(
    name="tpe-train",
    section=TPETrainSection,
    run="posesyn_core.tpe.stages:run_tpe_train",
    description="Train the target pose estimator from scratch (mini-world lab data by default).",
    inputs=("world",),
    outputs=("model.pt", "loss.jsonl", "checkpoints/last.pt"),
    resources=Resources(cpu="2", memory="4Gi"),
    gpu=True,
)
FINETUNE = StageSpec(
    name="finetune",
    section=FinetuneSection,
    run="posesyn_core.tpe.stages:run_finetune",
    description="Fine-tune the TPE on real + kept synthetic data with its original loss.",
    inputs=("tpe-train", "filter"),
    outputs=("model.pt", "loss.jsonl", "checkpoints/last.pt"),
    resources=Resources(cpu="2", memory="4Gi"),
    gpu=True,
)
EVALUATE = StageSpec(
    name="evaluate",
    section=EvaluateSection,
    run="posesyn_core.tpe.stages:run_evaluate",
    description="MPJPE / PA-MPJPE / PCK of named checkpoints on test sets, per dataset and motion family.",
    inputs=("tpe-train", "finetune"),
    outputs=("results.json", "results.md", "per_sample/"),
    resources=Resources(cpu="2", memory="4Gi"),
)
