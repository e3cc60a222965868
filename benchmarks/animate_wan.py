"""Frames/s of the `animate` stage's wan-animate backend with tiny random Wan2.2-Animate components, on CPU, beside
the render backend on the same fitted motions.

    PYOPENGL_PLATFORM=osmesa .venv/bin/python benchmarks/animate_wan.py --motions 8 --frames-per-motion 16

The tiny components (`posesyn_core.animate.wan_tiny`) have the real classes and folder layout at widths of 2-32,
so this measures the backend's own cost around the model (loading, reference and face preparation, pose videos,
segment continuation, VAE, resizing, labels, encoding), not Wan-Animate-14B's speed: that needs a GPU
(`benchmarks/gpu_check.py`). One run root (deleted after); retarget once, then animate with each backend (`force`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "animate"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--motions", type=int, default=8)
    parser.add_argument("--frames-per-motion", type=int, default=16)
    parser.add_argument("--resolution", type=int, nargs="+", default=[32, 64], help="wan-animate working sizes")
    parser.add_argument("--segment-frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    import torch
    from test_animate_render import make_motions, make_references

    from posesyn_core.animate.wan_tiny import save_tiny_wan_animate
    from posesyn_core.body import load_body_model
    from posesyn_core.pipeline import RunConfig
    from posesyn_core.stages import execute_stage
    from posesyn_core.storage import open_store

    root = Path(tempfile.mkdtemp(prefix="posesyn-bench-wan-"))
    store = open_store(root.resolve().as_uri())
    body = load_body_model("anny", decimate_cell=0.02)
    make_references(store, body, 4)
    make_motions(store, body, args.motions, frames=args.frames_per_motion + 8)
    model = save_tiny_wan_animate(root / "wan-tiny")

    def config(animate: dict) -> RunConfig:
        return RunConfig.model_validate({
            "name": "bench-wan", "root": store.url, "stages": ["retarget", "animate"], "device": "cpu",
            "retarget": {"references": "refs/references.jsonl", "frames_per_motion": args.frames_per_motion},
            "animate": animate,
        })  # fmt: skip

    execute_stage(config({}), "retarget", store=store)
    frames = args.motions * args.frames_per_motion
    rows = []
    threads = torch.get_num_threads()  # the render backend's in-process worker sets 1 thread: it runs last
    variants = [
        (f"wan-animate {r}px", {"backend": "wan-animate", "wan_animate": {
            "model_path": str(model), "resolution": r, "steps": args.steps, "segment_frames": args.segment_frames}})
        for r in args.resolution
    ] + [("render", {"render": {"workers": 1}})]  # fmt: skip
    for name, animate in variants:
        t = time.perf_counter()
        execute_stage(config(animate), "animate", store=store, force=True)
        seconds = time.perf_counter() - t
        assert store.read_json("animate/summary.json")["frames"] == frames
        rows.append((name, seconds))
    print(f"cpu cores: {len(os.sched_getaffinity(0))}, torch threads: {threads}, {args.motions} "
          f"motions x {args.frames_per_motion} frames, 128x128 references, wan: {args.steps} steps, segments of "
          f"{args.segment_frames}")  # fmt: skip
    render_fps = frames / rows[-1][1]
    for name, seconds in rows:
        fps = frames / seconds
        print(f"  {name:<18} {seconds:7.1f} s  {fps:7.1f} frames/s  ({fps / render_fps:.2f}x render)")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
