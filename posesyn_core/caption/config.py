"""The `caption` stage's config section and spec (light: no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from posesyn_core.config import Resources, StageSection, StrictModel
from posesyn_core.eem.pseudo_label import FitTo2d


class VlmOptions(StrictModel):
    """A vision-language model through transformers (`AutoProcessor` + `AutoModelForImageTextToText`)."""

    model_path: str | None = Field(None, description="Local folder of a transformers VLM (e.g. BLIP, LLaVA); "
                                   "loaded offline (local_files_only).")  # fmt: skip
    prompt: str = Field(
        "Describe the pose of the person in one sentence.",
        description="Text prompt; chat models get it through their chat template with the image.",
    )
    max_new_tokens: int = Field(40, ge=1, description="Longest caption in tokens.")
    batch_size: int = Field(8, ge=1, description="Images per generate() call.")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature when several captions are asked for.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weights dtype: auto = bfloat16 on CUDA, float32 on CPU."
    )


class CaptionSection(StageSection):
    """Describe each challenging sample in words (the MSM's text condition)."""

    method: Literal["posecodes", "vlm"] = Field(
        "posecodes", description="posecodes: from the 3D pseudo-label, offline; vlm: from the image (vlm.model_path)."
    )
    num_captions: int = Field(
        3, ge=1, description="Captions per challenging sample (the first is used by msm by default)."
    )
    fit_to_2d: FitTo2d = Field(
        "lift", description="posecodes: first make the pseudo-label agree with the GT 2D (eem/pseudo_label.py): "
        "none, rotate (torso direction) or lift (rotate, then limbs re-lifted from the 2D)."
    )  # fmt: skip
    crop_scale: float = Field(1.2, gt=0, description="VLM input: the person box enlarged by this factor.")
    vlm: VlmOptions = Field(default_factory=VlmOptions, description="VLM settings (method: vlm).")

    @model_validator(mode="after")
    def _vlm_needs_model(self) -> CaptionSection:
        if self.method == "vlm" and not self.vlm.model_path:
            raise ValueError("caption.vlm.model_path: required when caption.method is 'vlm'")
        return self


def _spec():  # noqa: ANN202
    from posesyn_core.stages import StageSpec

    return StageSpec(
        name="caption",
        section=CaptionSection,
        run="posesyn_core.caption.stage:run",
        description="Describe each hard pose: pose-derived posecodes captions, or a VLM on the image.",
        inputs=("eem",),
        outputs=("captions.jsonl", "examples.json"),
        resources=Resources(cpu="1", memory="2Gi"),
    )


SPEC = _spec()
