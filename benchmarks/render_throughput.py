"""Render throughput on one core: frames/s of the mesh renderer alone and of a whole labelled frame
(mesh + background + occluders + labels) at 128x128 and 256x256, ANNY decimated mesh, varied poses.

    PYOPENGL_PLATFORM=osmesa .venv/bin/python benchmarks/render_throughput.py [--frames 200]

Target (issue 3): >= 50 frames/s at 128x128 on one core.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("LP_NUM_THREADS", "1")  # Mesa's llvmpipe would otherwise spread over every core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--decimate-cell", type=float, default=0.03)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from posesyn_core.body import load_body_model
    from posesyn_core.render.appearance import subject_colors
    from posesyn_core.render.camera import Camera, look_at
    from posesyn_core.render.frame import random_lighting, render_frame
    from posesyn_core.render.mesh_renderer import MeshRenderer

    rng = np.random.default_rng(0)
    body = load_body_model("anny", decimate_cell=args.decimate_cell)
    n = args.frames
    pose = torch.as_tensor(rng.normal(0, 0.25, (n, 21, 3)), dtype=torch.float32)
    out, _ = body.stand_on_floor(pose)
    verts, joints = out.vertices.numpy(), out.joints.numpy()
    colors = subject_colors(rng, body.vertex_part)
    rot, t = look_at(np.array([0.5, 1.2, 3.5]), np.array([0.0, 0.9, 0.0]))
    camera = Camera(np.array([800.0, 800, 320, 240]), rot, t)
    print(f"ANNY mesh: {body.num_vertices} vertices, {len(body.faces)} triangles; {n} frames per figure")
    for size in (128, 256):
        renderer = MeshRenderer(size, size, body.faces, body.num_vertices)
        render_frame(renderer, verts[0], joints[0], colors, camera, "wild", rng)  # warm-up: first upload
        start = time.perf_counter()
        for i in range(n):
            renderer.render(verts[i], colors, camera, random_lighting(rng, "lab"))
        mesh_fps = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n):
            render_frame(renderer, verts[i], joints[i], colors, camera, "wild", rng, occluders=1)
        frame_fps = n / (time.perf_counter() - start)
        print(f"{size}x{size}: mesh render {mesh_fps:6.1f} frames/s, full labelled frame {frame_fps:6.1f} frames/s")
        renderer.close()


if __name__ == "__main__":
    main()
