"""The `animate` stage: its config section and spec (light module: no torch at import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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


class WanAnimateBackend(StrictModel):
    """The GPU backend: Wan2.2-Animate (diffusers `WanAnimatePipeline`) re-poses the reference person in their own
    scene, driven by a pose video drawn from the fitted body; long motions are generated in segments that continue
    each other."""

    model_path: str | None = Field(
        None, description="Local diffusers folder of Wan2.2-Animate (e.g. Wan-AI/Wan2.2-Animate-14B-Diffusers); "
        "read with local_files_only, never downloaded."
    )
    resolution: int = Field(1280, ge=16, description="Longer side of the generated video in pixels; the shorter "
                            "side follows the reference's aspect ratio, both rounded to multiples of 16.")  # fmt: skip
    steps: int = Field(20, ge=1, description="Denoising steps per segment.")
    guidance_scale: float = Field(1.0, ge=1, description="Classifier-free guidance scale (1 disables it, as "
                                  "Wan-Animate is usually run).")  # fmt: skip
    segment_frames: int = Field(77, ge=5, description="Frames generated per segment (4n + 1, the model's 77 by "
                                "default); a motion of L frames takes ceil((L - p) / (segment_frames - p)) "
                                "segments, p = prev_segment_frames.")  # fmt: skip
    prev_segment_frames: Literal[1, 5] = Field(1, description="Last frames of a segment that condition the next.")
    prompt: str = Field("a photo of a person {caption}, full body, realistic", description="Prompt; {caption} is "
                        "the motion text.")  # fmt: skip
    negative_prompt: str = Field("blurry, deformed, extra limbs, cartoon", description="Negative prompt (used "
                                 "only with guidance_scale > 1).")  # fmt: skip
    offload: Literal["none", "model", "sequential"] = Field(
        "none", description="CUDA memory: none (all on the GPU, ~40 GB for the 14B model), model (each model moved "
        "to the GPU while it runs) or sequential (layer by layer: smallest memory, slowest)."
    )
    vae_fp32: bool = Field(True, description="Keep the VAE in float32 when the rest runs in bfloat16.")
    pipelines_per_device: int = Field(1, ge=1, description="Pipelines per device (each visible GPU, or the CPU), "
                                      "each animating its own motions, when memory holds several; outputs do "
                                      "not depend on it.")  # fmt: skip

    @field_validator("segment_frames")
    @classmethod
    def _four_n_plus_one(cls, v: int) -> int:
        if v % 4 != 1:
            raise ValueError(f"segment_frames must be 4n + 1 (the VAE packs 4 frames per latent frame), got {v}")
        return v


class DiffusionBackend(StrictModel):
    """A small-GPU backend (~6 GB): Stable Diffusion 1.x + OpenPose ControlNet img2img over the render backend's
    frame, one frame at a time (no temporal coherence, no identity beyond the rendered colours)."""

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

    # Byte-identical outputs for any worker / pipeline count (tests: render determinism, wan pool vs in-process).
    runtime_keys = frozenset({"render.workers", "wan_animate.pipelines_per_device"})

    backend: Literal["render", "wan-animate", "diffusion"] = Field(
        "render", description="render (CPU, mesh renderer), wan-animate (GPU, Wan2.2-Animate) or diffusion "
        "(small GPU, SD 1.x + ControlNet per frame)."
    )
    frames_per_part: int = Field(512, ge=1, description="Frames per dataset part (the unit of resume).")
    image_ext: Literal["jpg", "png"] = Field("jpg", description="Image encoding of the frames.")
    render: RenderBackend = Field(default_factory=RenderBackend, description="Options of the render backend.")
    wan_animate: WanAnimateBackend = Field(default_factory=WanAnimateBackend, description="Options of the "
                                           "wan-animate backend.")  # fmt: skip
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
    gpu=True,  # the CUDA image: the wan-animate / diffusion backends (render runs there too, on CPU)
    extra_image_packages=("diffusers", "transformers", "accelerate", "ftfy"),
)
