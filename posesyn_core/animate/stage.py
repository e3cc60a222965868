"""The `animate` stage: every fitted frame of `retarget/fits.jsonl` -> an image with labels, as a pose dataset.

Writes `animate/dataset/` (joint set smpl22; per-sample meta: challenging sample id, reference id, motion id,
frame index, family, and `fit` = where the body-model parameters are in retarget's chunks), plus
`animate/contact_sheet.png` and `animate/summary.json`. A dataset part holds whole motions and is written
atomically, so a killed run resumes at the first missing part. The render backend fans motions out to a process
pool; results come back in order, so outputs do not depend on the worker count.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator

import numpy as np

from posesyn_core.animate.jobs import BodySpec, MotionJob
from posesyn_core.data.dataset import PoseDataset, PoseSample, finish_dataset, part_exists, write_part
from posesyn_core.errors import DataError
from posesyn_core.stages import StageContext
from posesyn_core.storage import Store, join, open_store

DATASET = "dataset"
SHEET_SAMPLES = 32


class JobSource:
    """Builds MotionJobs from retarget's outputs, reading each chunk and reference image once."""

    def __init__(self, store: Store, fits: list[dict], seed: int):
        self.store, self.fits, self.seed = store, fits, seed
        self._chunk_key: str | None = None
        self._chunk: dict[str, np.ndarray] = {}
        self._images: dict[str, bytes] = {}

    def _image(self, row: dict) -> bytes:
        ref = row["reference_dataset"]
        store, prefix = (open_store(ref), "") if "://" in ref else (self.store, ref)
        key = join(prefix, row["reference_image"])
        if key not in self._images:
            self._images[key] = store.read_bytes(key)
        return self._images[key]

    def job(self, i: int) -> MotionJob:
        row = self.fits[i]
        if row["chunk"] != self._chunk_key:  # rows are grouped by chunk: keep only the current one
            self._chunk_key, self._chunk = row["chunk"], self.store.load_npz(row["chunk"])
        a, r = self._chunk, row["row"]
        return MotionJob(index=i, row=row, body_pose=a["body_pose"][r], global_orient=a["global_orient"][r],
                         transl=a["transl"][r], shape=a["shape"][r], joints3d=a["joints3d"][r],
                         camera=a["camera"][r], size=(int(a["size"][r][0]), int(a["size"][r][1])),
                         reference_image=self._image(row),
                         reference_joints2d=np.asarray(row["reference_joints2d"], np.float64),
                         reference_joint_set=row["reference_joint_set"], seed=self.seed)  # fmt: skip


def _frames(ctx: StageContext, jobs: Iterator[MotionJob], body: BodySpec) -> Iterator[list[tuple[PoseSample, bytes]]]:
    """Rendered frames per job, in job order, from a pool of `render.workers` processes (in-process for 1)."""
    cfg = ctx.config
    if cfg.backend == "wan-animate":
        yield from _wan_frames(ctx, jobs, body)
        return
    if cfg.backend == "diffusion":
        from posesyn_core.animate.diffusion_backend import DiffusionAnimator

        animator = DiffusionAnimator(cfg.diffusion, cfg.render, body, ctx.device, cfg.image_ext)
        for job in jobs:
            yield animator(job)
        return
    from posesyn_core.animate.render_backend import init_worker, render_job

    args = (cfg.render, body, cfg.image_ext)
    if cfg.render.workers == 1:
        init_worker(*args)
        yield from map(render_job, jobs)
        return
    # spawn: each worker creates its own OpenGL context and torch state (never inherit them through fork).
    with multiprocessing.get_context("spawn").Pool(cfg.render.workers, init_worker, args) as pool:
        yield from pool.imap(render_job, jobs, chunksize=1)


def _wan_frames(ctx: StageContext, jobs: Iterator[MotionJob], body: BodySpec):
    """Wan-Animate frames per job, in job order: in this process for one device slot, else a pool with one
    pipeline per slot (`pipelines_per_device` per GPU); each motion is seeded by its index, so the slot never
    matters."""
    from posesyn_core.animate import wan_animate

    opts, ext = ctx.config.wan_animate, ctx.config.image_ext
    slots = wan_animate.device_slots(ctx.device, opts.pipelines_per_device)
    if len(slots) == 1:
        yield from map(wan_animate.WanAnimator(opts, body, slots[0], ext), jobs)
        return
    mp = multiprocessing.get_context("spawn")  # CUDA cannot be initialised again in a forked child
    queue = mp.Queue()
    for slot in slots:
        queue.put(slot)
    with mp.Pool(len(slots), wan_animate.init_worker, (queue, opts, body, ext)) as pool:
        yield from pool.imap(wan_animate.animate_job, jobs, chunksize=1)


def run(ctx: StageContext) -> None:
    cfg = ctx.config
    started = time.monotonic()
    if cfg.backend == "wan-animate":  # a missing or incomplete weights folder fails before any work
        from posesyn_core.animate.wan_animate import check_weights_folder

        check_weights_folder(cfg.wan_animate.model_path)
    fits = ctx.store.read_jsonl(ctx.input_key("retarget", "fits.jsonl"))
    fitted = ctx.store.read_json(ctx.input_key("retarget", "summary.json"))
    if not fits:
        raise DataError(f"{ctx.store.url_for(ctx.input_key('retarget', 'fits.jsonl'))}: no fitted motions")
    body = BodySpec(fitted["body_model"], fitted["body_model_path"])
    frames_per_motion = len(fits[0]["frames"])
    per_part = max(1, cfg.frames_per_part // frames_per_motion)
    num_parts = -(-len(fits) // per_part)
    prefix = ctx.key(DATASET)
    todo = [k for k in range(num_parts) if not part_exists(ctx.store, prefix, k)]
    source = JobSource(ctx.store, fits, ctx.seed)
    progress = ctx.progress(len(fits) * frames_per_motion, "frames")
    progress.advance((num_parts - len(todo)) * per_part * frames_per_motion)
    jobs = (source.job(i) for k in todo for i in range(k * per_part, min((k + 1) * per_part, len(fits))))
    results = _frames(ctx, jobs, body)
    rendered = 0
    for k in todo:
        samples, images = [], []
        for _ in range(k * per_part, min((k + 1) * per_part, len(fits))):
            for sample, image in next(results):
                samples.append(sample)
                images.append(image)
            progress.advance(frames_per_motion)
        write_part(ctx.store, prefix, k, samples, images, cfg.image_ext)
        rendered += len(samples)
    results.close()  # shuts the pool down
    info = finish_dataset(ctx.store, prefix, "animate", "smpl22", num_parts)
    seconds = time.monotonic() - started
    ds = PoseDataset(ctx.store, prefix)
    pick = np.linspace(0, len(ds) - 1, min(SHEET_SAMPLES, len(ds))).round().astype(int)
    from posesyn_core.animate.contact_sheet import contact_sheet

    ctx.store.write_bytes(ctx.key("contact_sheet.png"), contact_sheet(ds, pick.tolist()))
    # summary.json is an output, so the same for a resumed run as for an uninterrupted one; how this attempt
    # went (frames rendered now, speed) goes to the manifest.
    summary = {"backend": cfg.backend, "motions": len(fits), "frames": info["num_samples"]}
    ctx.store.write_json(ctx.key("summary.json"), summary)
    ctx.counts["motions"], ctx.counts["frames"] = len(fits), info["num_samples"]
    ctx.extra["animate"] = {**summary, "frames_rendered_now": rendered, "seconds": round(seconds, 2),
                            "frames_per_second": round(rendered / seconds, 2) if rendered else None}  # fmt: skip

