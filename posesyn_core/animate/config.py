"""The `animate` stage: its config section and spec (light module: no torch at import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posesyn_core.config import Resources, StageSection, StrictModel
from posesyn_core.stages import StageSpec


class RenderBackend(StrictModel):
    """The offline backend: the fitted body mesh rendered into the reference image with pyrender (OSMesa)."""

    workers: int = Field(2, ge=1, description="Render processes (each loads the body model and a renderer once).")
    decimate_cell: float | None = Field(
        0.02, gt=0, description="Mesh decimation cell (metres) for small images; None renders the full mesh."
    )
    light_intensity: tuple[float, float] = Field((2.0, 6.0), description="Range of the key light's intensity.")
    ambient: tuple[float, float] = Field((0.25, 0.6), description="Range of the ambient light level.")
    mask_dilate_px: int = Field(5, ge=0, description="Growth of the reference person's mask before inpainting.")
    inpaint_radius: int = Field(5, ge=1, description="cv2.inpaint radius (pixels) used to remove the reference.")


class DiffusionBackend(StrictModel):
    """The GPU backend: Stable Diffusion + OpenPose ControlNet, img2img from the reference image."""

    model_path: str | None = Field(None, description="Local diffusers folder of a Stable Diffusion 1.x model.")
    controlnet_path: str | None = Field(None, description="Local diffusers folder of an OpenPose ControlNet.")
    resolution: int = Field(512, ge=64, description="Side of the generated square image (then resized back).")
    steps: int = Field(20, ge=1, description="Denoising steps.")
    strength: float = Field(0.75, gt=0, le=1, description="img2img strength: 1 ignores the reference's pixels.")
    guidance_scale: float = Field(3.5, ge=1, description="Classifier-free guidance scale (1 disables it).")
    controlnet_scale: float = Field(1.0, ge=0, description="Weight of the pose guidance residuals.")
    prompt: str = Field(
        "a photo of a person {caption}, full body, realistic", description="Prompt; {caption} is the motion text."
    )
    negative_prompt: str = Field("blurry, deformed, extra limbs, cartoon", description="Negative prompt.")
    batch_size: int = Field(8, ge=1, description="Frames generated per pipeline call.")
    half: bool = Field(True, description="fp16 weights on CUDA.")


class AnimateSection(StageSection):
    """Every fitted frame (`retarget.frames_per_motion` per motion) rendered as an image with exact labels,
    written as a pose dataset."""

    backend: Literal["render", "diffusion"] = Field("render", description="render (CPU) or diffusion (GPU).")
    frames_per_part: int = Field(512, ge=1, description="Frames per dataset part (the unit of resume).")
    image_ext: Literal["jpg", "png"] = Field("jpg", description="Image encoding of the frames.")
    render: RenderBackend = Field(default_factory=RenderBackend, description="Options of the render backend.")
    diffusion: DiffusionBackend = Field(default_factory=DiffusionBackend, description="Options of the diffusion "
                                        "backend.")  # fmt: skip


SPEC = StageSpec(
    name="animate",
    section=AnimateSection,
    run="posesyn_core.animate.stage:run",
    description="Render each fitted motion into its reference image (person removed, appearance transferred, "
    "lighting varied) and write the frames with exact 2D/3D labels as a pose dataset.",
    inputs=("retarget",),
    outputs=("dataset/", "contact_sheet.png", "summary.json"),
    resources=Resources(cpu="2", memory="4Gi"),
    extra_image_packages=("diffusers", "transformers"),
)
