"""The `world` stage's config section and spec (light: no torch at import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posesyn_core.config import Resources, StageSection
from posesyn_core.stages import StageSpec


class WorldConfig(StageSection):
    """Sizes and looks of the mini-world: lab 3D data (common motions, studio), wild 2D data (every motion family,
    cluttered scenes, occluders, unusual viewpoints), held-out test sets and a motion library with texts."""

    runtime_keys = frozenset({"workers"})  # outputs are byte-identical for any worker count (tested)

    body_model: Literal["anny", "smpl"] = Field("anny", description="Body model posed and rendered.")
    body_model_path: str | None = Field(None, description="SMPL model file or folder (body_model: smpl only).")
    decimate_cell: float = Field(0.03, gt=0, description="Mesh decimation cell (metres) for the small renders.")
    image_size: int = Field(128, ge=32, le=1024, description="Side of the square person-centred crops (pixels).")
    image_format: Literal["jpg", "png"] = Field("jpg", description="Image encoding.")
    num_subjects: int = Field(64, ge=1, description="Training subjects (body shapes) shared by lab3d/wild2d/motions.")
    num_test_subjects: int = Field(16, ge=1, description="Held-out subjects of lab3d_test and wild_test.")
    lab3d: int = Field(8000, ge=0, description="Samples of the lab 3D training set.")
    lab3d_test: int = Field(500, ge=0, description="Samples of the held-out lab test set.")
    wild2d: int = Field(4000, ge=0, description="Samples of the in-the-wild 2D set (its 3D is hidden).")
    wild_test: int = Field(1000, ge=0, description="Samples of the held-out in-the-wild 3D test set.")
    motions: int = Field(3000, ge=0, description="Motion clips with texts.")
    posture_texts: int = Field(
        2, ge=0, description="Posture sentences (posecodes of the clip's key frame) added to each clip's action texts."
    )
    wild_unusual_fraction: float = Field(
        0.2, ge=0, le=1, description="Share of wild2d samples from the unusual (wild-only) motion families: a 2D "
        "photo collection is mostly everyday poses, and EEM's job is to find the rare ones the TPE fails on."
    )
    wild_test_unusual_fraction: float = Field(
        0.6, ge=0, le=1, description="The same share for wild_test, a benchmark that over-samples the long tail."
    )
    occluder_probability: float = Field(0.5, ge=0, le=1, description="Chance a wild image gets occluders.")
    frames_per_clip: int = Field(
        8, ge=1, description="Image samples taken from each generated clip (different frames and cameras)."
    )
    chunk_size: int = Field(500, ge=1, description="Samples (or clips) per resumable part.")
    workers: int = Field(2, ge=1, description="Worker processes building parts in parallel.")


WORLD = StageSpec(
    name="world",
    section=WorldConfig,
    run="posesyn_core.world.stage:run",
    description="Mini-world: body model + motion library + CPU renderer -> lab3d, lab3d_test, wild2d (+ hidden "
    "3D), wild_test and motions.",
    outputs=("lab3d", "lab3d_test", "wild2d", "wild2d_hidden3d.npz", "wild_test", "motions"),
    resources=Resources(cpu="2", memory="4Gi"),
    extra_image_packages=("pyrender==0.1.45", "PyOpenGL==3.1.10", "body-models==0.26.2", "anny==0.6.2"),
)
