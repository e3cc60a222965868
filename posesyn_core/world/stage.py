"""The `world` stage: builds the mini-world's datasets in resumable parts, two worker processes at a time.

Outputs under `world/`:

    lab3d/, lab3d_test/        pose datasets (smpl22), common families, studio look, 3D + camera labels
    wild2d/                    pose dataset, every family, wild look; 2D labels only (like a real 2D dataset)
    wild2d_hidden3d.npz        its hidden GT (ids, joints3d camera frame, cameras): for evaluation only
    wild_test/                 held-out wild pose dataset with 3D labels
    motions/                   motion clips (20 fps world joints) with action + posture texts (data/motions.py)

Every part draws from `ctx.rng(stream, part)`, so a part's bytes depend only on the seed and the config: a
killed build resumes by skipping parts that exist, and reruns are byte-identical. Test sets use held-out
subjects. The cost is ANNY posing (batched) and rendering (one reused OpenGL scene per worker).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from posesyn_core.data.dataset import PoseSample, finish_dataset, part_exists, write_part
from posesyn_core.data.motions import MotionClip, finish_motions, motion_part_exists, write_motion_part
from posesyn_core.stages import StageContext
from posesyn_core.storage import Store, join, open_store
from posesyn_core.world.config import WorldConfig

# Random streams: ctx.rng(stream, part) for each part of each output, ctx.rng(SUBJECTS) for the subject pool.
SUBJECTS = 0
STREAMS = {"lab3d": 1, "lab3d_test": 2, "wild2d": 3, "wild_test": 4, "motions": 5}
STYLE = {"lab3d": "lab", "lab3d_test": "lab", "wild2d": "wild", "wild_test": "wild"}
TEST_SETS = ("lab3d_test", "wild_test")
HIDDEN3D = "wild2d_hidden3d.npz"
HIDDEN_PARTS = "wild2d_hidden3d"
BATCH = 64  # bodies posed per ANNY call


@dataclass
class PartJob:
    """One part of one output, built by a worker process."""

    output: str  # lab3d | lab3d_test | wild2d | wild_test | motions
    part: int
    count: int
    rng: np.random.Generator
    root: str  # storage URL of the run root
    config: dict  # WorldConfig dump
    subjects: np.ndarray  # (S, shape params) pool this output draws from
    subject_offset: int  # id of subjects[0] (test subjects are numbered after training ones)


# ------------------------------------------------------------------------------------------ worker state
_STATE: dict = {}


def _worker_init() -> None:
    """Each worker renders on one core: Mesa and torch single-threaded."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    os.environ["LP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _body(cfg: WorldConfig):
    key = ("body", cfg.body_model, cfg.body_model_path, cfg.decimate_cell)
    if key not in _STATE:
        from posesyn_core.body import load_body_model

        _STATE[key] = load_body_model(cfg.body_model, cfg.body_model_path, decimate_cell=cfg.decimate_cell)
    return _STATE[key]


def _renderer(cfg: WorldConfig):
    key = ("renderer", cfg.image_size, cfg.body_model, cfg.decimate_cell)
    if key not in _STATE:
        from posesyn_core.render.mesh_renderer import MeshRenderer

        body = _body(cfg)
        _STATE[key] = MeshRenderer(cfg.image_size, cfg.image_size, body.faces, body.num_vertices)
    return _STATE[key]


def _skeleton(cfg: WorldConfig, subject: int, shape: np.ndarray):
    key = ("skeleton", cfg.body_model, subject)
    if key not in _STATE:
        import torch

        _STATE[key] = _body(cfg).rest_skeleton(torch.as_tensor(shape[None], dtype=torch.float32))
    return _STATE[key]


# ------------------------------------------------------------------------------------------------ parts
def _prefix(output: str) -> str:
    return join("world", output)


def _families(rng: np.random.Generator, style: str, n: int, unusual_fraction: float) -> list[str]:
    from posesyn_core.world.motions import FAMILIES

    common = [f for f, fam in FAMILIES.items() if fam.common]
    unusual = [f for f, fam in FAMILIES.items() if not fam.common]
    if style == "lab":
        return [common[i] for i in rng.integers(len(common), size=n)]
    pick_unusual = rng.random(n) < unusual_fraction
    return [unusual[rng.integers(len(unusual))] if u else common[rng.integers(len(common))] for u in pick_unusual]


def build_motion_part(job: PartJob) -> Counter:
    """`count` clips spread uniformly over every family, on the training subjects."""
    from posesyn_core.caption.posecodes import describe_key_frame
    from posesyn_core.world.motions import FAMILIES, make_clip, sample_track

    store, cfg = open_store(job.root), WorldConfig.model_validate(job.config)
    if motion_part_exists(store, _prefix("motions"), job.part):
        return Counter(parts_skipped=1)
    rng, names = job.rng, list(FAMILIES)
    clips = []
    for i in range(job.count):
        family = names[int(rng.integers(len(names)))]
        subject = int(rng.integers(len(job.subjects)))
        track = sample_track(rng, family)
        joints, _ = make_clip(_skeleton(cfg, subject + job.subject_offset, job.subjects[subject]), track)
        meta = {**track.meta, "subject": subject + job.subject_offset, "common": FAMILIES[family].common}
        # Action texts plus posture sentences of the key frame: like a text-motion corpus whose annotators also
        # say how the body is held ("upside down, arms overhead"), the vocabulary a pose caption uses.
        texts = [*track.texts, *describe_key_frame(joints, rng, cfg.posture_texts)]
        clips.append(MotionClip(f"motion-{job.part:05d}-{i:04d}", family, joints.astype(np.float32),
                                texts, meta))  # fmt: skip
    write_motion_part(store, _prefix("motions"), job.part, clips)
    return Counter(motion_clips=len(clips), motion_frames=sum(len(c.joints) for c in clips))


def _pose_rows(job: PartJob, cfg: WorldConfig, style: str) -> list[dict]:
    """Pose parameters of `count` samples: clips of the style's families, `frames_per_clip` frames each."""
    from posesyn_core.world.motions import FAMILIES, make_clip, sample_track

    rng = job.rng
    num_clips = math.ceil(job.count / cfg.frames_per_clip)
    rows = []
    unusual = cfg.wild_test_unusual_fraction if job.output == "wild_test" else cfg.wild_unusual_fraction
    for c, family in enumerate(_families(rng, style, num_clips, unusual)):
        subject = int(rng.integers(len(job.subjects)))
        track = sample_track(rng, family)
        _, transl = make_clip(_skeleton(cfg, subject + job.subject_offset, job.subjects[subject]), track)
        # Skip the first quarter: most families start from standing and ease into their motion.
        first = len(transl) // 4
        frames = first + rng.choice(len(transl) - first, size=cfg.frames_per_clip,
                                    replace=len(transl) - first < cfg.frames_per_clip)  # fmt: skip
        for f in np.sort(frames):
            rows.append({"family": family, "common": FAMILIES[family].common, "subject": subject, "clip": c,
                         "frame": int(f), "body_pose": track.body_pose[f], "orient": track.global_orient[f],
                         "transl": transl[f], "texts": track.texts})  # fmt: skip
    return rows[: job.count]


def build_image_part(job: PartJob) -> Counter:
    """`count` rendered, labelled samples of one pose dataset (plus the hidden 3D of wild2d)."""
    import torch

    from posesyn_core.render.appearance import subject_colors
    from posesyn_core.render.frame import render_frame
    from posesyn_core.world.scenes import crop_style, sample_view

    store, cfg = open_store(job.root), WorldConfig.model_validate(job.config)
    prefix, style = _prefix(job.output), STYLE[job.output]
    if part_exists(store, prefix, job.part):
        return Counter(parts_skipped=1)
    rng = job.rng
    body, renderer = _body(cfg), _renderer(cfg)
    # 1. Poses from motion clips.
    rows = _pose_rows(job, cfg, style)
    clip_colors = {}
    samples, images, hidden = [], [], []
    for lo in range(0, len(rows), BATCH):
        batch = rows[lo : lo + BATCH]
        # 2. Pose the meshes (ANNY identities are cached per subject, so a batch costs one skinning pass).
        with torch.no_grad():
            out = body(torch.as_tensor(np.stack([r["body_pose"] for r in batch]), dtype=torch.float32),
                       torch.as_tensor(job.subjects[[r["subject"] for r in batch]], dtype=torch.float32),
                       torch.as_tensor(np.stack([r["orient"] for r in batch]), dtype=torch.float32),
                       torch.as_tensor(np.stack([r["transl"] for r in batch]), dtype=torch.float32))  # fmt: skip
        verts, joints = out.vertices.numpy().astype(np.float64), out.joints.numpy().astype(np.float64)
        # 3. Render each sample from its own viewpoint, with its clip's clothes.
        for r, v, j in zip(batch, verts, joints, strict=True):
            if r["clip"] not in clip_colors:
                clip_colors[r["clip"]] = subject_colors(rng, body.vertex_part)
            view = sample_view(rng, j, style)
            frame = render_frame(renderer, v, j, clip_colors[r["clip"]], view.camera, style, rng,
                                 **crop_style(rng, style, cfg.occluder_probability))  # fmt: skip
            sample_id = f"{job.output}-{job.part:05d}-{len(samples):04d}"
            ys, xs = np.nonzero(frame.mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            with_3d = job.output != "wild2d"
            samples.append(PoseSample(
                id=sample_id, image=f"images/{sample_id}.{cfg.image_format}", width=cfg.image_size,
                height=cfg.image_size, bbox=bbox, joints2d=np.round(frame.joints2d, 4).tolist(),
                joints3d=np.round(frame.joints3d, 5).tolist() if with_3d else None,
                camera={k: round(x, 5) for k, x in frame.camera.as_dict().items()} if with_3d else None,
                meta={"family": r["family"], "common": r["common"], "subject": r["subject"] + job.subject_offset,
                      "clip": f"{job.part}-{r['clip']}", "frame": r["frame"], "style": style,
                      "azimuth": round(view.azimuth, 1), "elevation": round(view.elevation, 1),
                      "hidden_joints": int((frame.joints2d[:, 2] == 0).sum()), "texts": r["texts"]},
            ))  # fmt: skip
            images.append(frame.image)
            if not with_3d:
                hidden.append((sample_id, frame.joints3d, frame.camera.intrinsics))
    # 4. Hidden 3D first, then the part (its jsonl marks the part complete).
    if hidden:
        store.save_npz(join("world", HIDDEN_PARTS, f"part-{job.part:05d}.npz"),
                       ids=np.array([h[0] for h in hidden], dtype=str),
                       joints3d=np.stack([h[1] for h in hidden]).astype(np.float32),
                       cameras=np.stack([h[2] for h in hidden]).astype(np.float32))  # fmt: skip
    write_part(store, prefix, job.part, samples, images, cfg.image_format)
    return Counter({f"{job.output}_samples": len(samples)})


def _build(job: PartJob) -> Counter:
    return build_motion_part(job) if job.output == "motions" else build_image_part(job)


# ------------------------------------------------------------------------------------------------- stage
def _jobs(ctx: StageContext, cfg: WorldConfig, subjects: np.ndarray) -> list[PartJob]:
    root = ctx.store.url
    jobs = []
    for output, stream in STREAMS.items():
        total = getattr(cfg, output)
        held_out = output in TEST_SETS
        pool = subjects[cfg.num_subjects :] if held_out else subjects[: cfg.num_subjects]
        for k in range(math.ceil(total / cfg.chunk_size)):
            count = min(cfg.chunk_size, total - k * cfg.chunk_size)
            jobs.append(PartJob(output, k, count, ctx.rng(stream, k), root, cfg.model_dump(mode="json"), pool,
                                cfg.num_subjects if held_out else 0))  # fmt: skip
    # Longest first (motions and renders interleave) so the two workers finish together.
    return sorted(jobs, key=lambda j: -j.count * (3 if j.output != "motions" else 1))


def _finish_hidden3d(store: Store, parts: int) -> None:
    keys = [join("world", HIDDEN_PARTS, f"part-{k:05d}.npz") for k in range(parts)]
    data = [store.load_npz(k) for k in keys]
    store.save_npz(join("world", HIDDEN3D), **{n: np.concatenate([d[n] for d in data]) for n in data[0]})


def run(ctx: StageContext) -> None:
    cfg: WorldConfig = ctx.config
    start = time.time()
    # 1. Subjects: one shared pool of body shapes, test subjects held out.
    from posesyn_core.body import load_body_model

    body = load_body_model(cfg.body_model, cfg.body_model_path)
    subjects = body.random_shapes(ctx.rng(SUBJECTS), cfg.num_subjects + cfg.num_test_subjects)
    # 2. Parts, in parallel worker processes (spawned: each gets its own OpenGL context).
    jobs = _jobs(ctx, cfg, subjects)
    progress = ctx.progress(sum(j.count for j in jobs), "samples")
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
            for job, counts in zip(jobs, pool.map(_build, jobs), strict=True):
                ctx.counts.update(counts)
                progress.advance(job.count)
    else:
        _worker_init()
        for job in jobs:
            ctx.counts.update(_build(job))
            progress.advance(job.count)
    # 3. Completion markers (info.json) and the hidden 3D of wild2d.
    for output in STREAMS:
        parts = math.ceil(getattr(cfg, output) / cfg.chunk_size)
        if output == "motions":
            finish_motions(ctx.store, _prefix(output), output, parts)
        else:
            finish_dataset(ctx.store, _prefix(output), output, "smpl22", parts)
    if cfg.wild2d:
        _finish_hidden3d(ctx.store, math.ceil(cfg.wild2d / cfg.chunk_size))
    ctx.extra["build_seconds"] = round(time.time() - start, 1)
    ctx.log.info("world built", extra={"fields": {"seconds": ctx.extra["build_seconds"], **ctx.counts}})
