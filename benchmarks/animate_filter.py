"""Throughput of `animate` (render backend) and `filter` at demo scale: frames/s of each and the total time.

    PYOPENGL_PLATFORM=osmesa .venv/bin/python benchmarks/animate_filter.py --frames 10240 --workers 2

Builds a throwaway run: standing reference people rendered by the world renderer (128x128 crops), motion-library
clips of every family on randomly shaped ANNY subjects (standing in for msm's motions), a randomly initialized
TPE of the default architecture (speed does not depend on its weights); then runs the real `retarget`,
`animate` and `filter` stages and prints their timings.
Target (issue 7): >= 10k frames animated and filtered in < 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "animate"))


def library_motions(store, body, n: int) -> None:  # noqa: ANN001
    """n motion-library clips (families in turn, random subjects) written where msm writes its motions."""
    import numpy as np
    import torch

    from posesyn_core.data.motions import MotionClip, write_motions
    from posesyn_core.world.motions import all_families, make_clip, sample_track

    rng = np.random.default_rng(0)
    families = all_families()
    clips = []
    for i in range(n):
        track = sample_track(rng, families[i % len(families)])
        joints, _ = make_clip(body.rest_skeleton(torch.as_tensor(body.random_shapes(rng, 1))), track)
        clips.append(MotionClip(f"hard-{i:05d}-m0", families[i % len(families)], joints.astype(np.float32),
                                track.texts, {"source_id": f"hard-{i:05d}", "caption": track.texts[0],
                                              "best_frame": len(joints) // 2}))  # fmt: skip
    write_motions(store, "msm/motions", "motions", clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10240, help="synthetic frames to produce")
    parser.add_argument("--frames-per-motion", type=int, default=16)
    parser.add_argument("--references", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2, help="animate render processes")
    parser.add_argument("--keep", help="keep the run under this folder instead of a temporary one")
    args = parser.parse_args()

    import torch
    from test_animate_render import make_references

    from posesyn_core.body import load_body_model
    from posesyn_core.pipeline import RunConfig
    from posesyn_core.stages import execute_stage
    from posesyn_core.storage import open_store
    from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict
    from posesyn_core.tpe.train import save_torch

    root = Path(args.keep or tempfile.mkdtemp(prefix="posesyn-bench-"))
    store = open_store(root.resolve().as_uri())
    motions = -(-args.frames // args.frames_per_motion)
    t0 = time.perf_counter()
    body = load_body_model("anny", decimate_cell=0.02)
    make_references(store, body, args.references)
    library_motions(store, body, motions)
    torch.manual_seed(0)
    save_torch(store, "tpe-train/model.pt", checkpoint_dict(TPE(TPEConfig())))
    print(f"setup: {motions} motions, {args.references} references in {time.perf_counter() - t0:.1f} s")

    run = RunConfig.model_validate({
        "name": "bench", "root": store.url, "stages": ["retarget", "animate", "filter"],
        "retarget": {"references": "refs/references.jsonl", "frames_per_motion": args.frames_per_motion},
        "animate": {"render": {"workers": args.workers}},
    })  # fmt: skip
    timings = {}
    for stage in ("retarget", "animate", "filter"):
        t = time.perf_counter()
        execute_stage(run, stage, store=store)
        timings[stage] = time.perf_counter() - t
    frames = store.read_json("animate/summary.json")["frames"]
    kept = store.read_json("filter/summary.json")["kept"]
    print(f"cpu cores available: {len(os.sched_getaffinity(0))}, torch threads: {torch.get_num_threads()}")
    print(f"retarget: {motions} motions ({frames} frames) in {timings['retarget']:.1f} s "
          f"= {frames / timings['retarget']:.0f} frames/s")  # fmt: skip
    print(f"animate:  {frames} frames in {timings['animate']:.1f} s = {frames / timings['animate']:.0f} frames/s")
    print(f"filter:   {frames} frames in {timings['filter']:.1f} s = {frames / timings['filter']:.0f} frames/s "
          f"({kept} kept with an untrained TPE)")  # fmt: skip
    total = timings["animate"] + timings["filter"]
    print(f"animate + filter: {total:.1f} s for {frames} frames (target: >= 10000 frames in < 240 s)")
    print(f"run kept at {root}" if args.keep else f"run folder {root} (temporary)")


if __name__ == "__main__":
    main()
