"""Offscreen mesh rendering with pyrender (OSMesa on CPU, `PYOPENGL_PLATFORM=osmesa`).

One scene and one OpenGL context per `MeshRenderer`; the body mesh is uploaded once and each frame only
overwrites its vertex buffer (positions, normals, colours) with glBufferSubData, because re-uploading the mesh
every frame halves throughput at small sizes. Returns the person layer (RGB, depth in metres, mask); the caller
composites it over a background (`render.backgrounds`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from posesyn_core.render.camera import Camera

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

# OpenCV camera axes -> OpenGL camera axes (y up, looking along -z).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class Layer:
    rgb: np.ndarray  # (H, W, 3) uint8, black where no person
    depth: np.ndarray  # (H, W) float32 metres along the optical axis, 0 where no person
    mask: np.ndarray  # (H, W) bool


@dataclass
class Lighting:
    direction: np.ndarray  # (3,) world direction the key light shines towards
    intensity: float  # key light, pyrender units (~2-5)
    color: np.ndarray  # (3,) key light colour in [0, 1]
    ambient: float  # ambient term in [0, 1]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted vertex normals."""
    tri = vertices[faces]  # (F, 3, 3)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), |fn| = 2 * area
    normals = np.zeros_like(vertices)
    for k in range(3):
        for d in range(3):
            normals[:, d] += np.bincount(faces[:, k], fn[:, d], minlength=len(vertices))
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def stable_gl_context_keys() -> None:
    """Make PyOpenGL's current-context id hashable by value (idempotent, process-wide).

    Under OSMesa, PyOpenGL 3.1.10's `contextdata.getContext()` returns a fresh ctypes pointer object on every
    call (same hash, but unequal). pyrender keys its shader-program cache by it, so every frame misses the
    cache, compiles new shader programs and never frees them: ~3 MB leaked and ~10 ms lost per frame (a render
    worker reached 12 GB after a few thousand frames). Returning the pointer's address keeps every per-context
    lookup (pyrender's and PyOpenGL's own) stable: 128 px renders go from ~13 ms to ~2.5 ms and memory stays flat.
    """
    import ctypes

    from OpenGL import contextdata

    if getattr(contextdata.getContext, "_posesyn_stable", False):
        return
    original = contextdata.getContext

    def get_context(context=None):  # noqa: ANN001, ANN202 - same signature as PyOpenGL's
        ctx = original(context)
        return ctx if isinstance(ctx, int) else ctypes.cast(ctx, ctypes.c_void_p).value

    get_context._posesyn_stable = True
    contextdata.getContext = get_context


class MeshRenderer:
    """Renders one triangle mesh of fixed topology at a fixed image size, many times."""

    def __init__(self, width: int, height: int, faces: np.ndarray, num_vertices: int):
        import pyrender

        self.width, self.height = width, height
        self.faces = np.asarray(faces, np.int64)
        self.num_vertices = num_vertices
        placeholder = np.zeros((num_vertices, 3), np.float32)
        placeholder[:3] = np.eye(3)  # non-degenerate bounds for pyrender
        prim = pyrender.Primitive(
            positions=placeholder,
            normals=np.tile([0.0, 0.0, 1.0], (num_vertices, 1)).astype(np.float32),
            color_0=np.ones((num_vertices, 4), np.float32),
            indices=self.faces.astype(np.uint32),
            material=pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
                                                        roughnessFactor=0.8, doubleSided=True),  # fmt: skip
        )
        self._prim = prim
        self.scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.3, 0.3, 0.3])
        self.scene.add(pyrender.Mesh([prim]))
        self._camera = pyrender.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear=0.05, zfar=100.0)
        self._camera_node = self.scene.add(self._camera, pose=np.eye(4))
        self._light = pyrender.DirectionalLight(color=np.ones(3), intensity=3.0)
        self._light_node = self.scene.add(self._light, pose=np.eye(4))
        stable_gl_context_keys()
        self._renderer = pyrender.OffscreenRenderer(width, height)
        self._uploaded = False

    def _upload(self, vertices: np.ndarray, colors: np.ndarray) -> None:
        """Overwrite the interleaved vertex buffer [position, normal, colour] of the already-uploaded mesh."""
        from OpenGL import GL

        data = np.concatenate([vertices, vertex_normals(vertices, self.faces), colors], 1).astype(np.float32)
        if not self._uploaded:  # first frame: pyrender creates the buffers from these arrays
            self._prim.positions, self._prim.normals, self._prim.color_0 = data[:, :3], data[:, 3:6], data[:, 6:]
            return
        self._renderer._platform.make_current()
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._prim._buffers[0])
        GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, np.ascontiguousarray(data))
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)

    def render(self, vertices: np.ndarray, colors: np.ndarray, camera: Camera, lighting: Lighting) -> Layer:
        """Render world-frame vertices (V, 3) with per-vertex RGBA colours (V, 4) in [0, 1]."""
        import pyrender

        if vertices.shape != (self.num_vertices, 3):
            raise ValueError(f"expected vertices ({self.num_vertices}, 3), got {vertices.shape}")
        # 1. Mesh: positions, normals and colours into the existing buffer.
        self._upload(vertices, colors)
        # 2. Camera: OpenCV intrinsics with integer pixel centres -> pyrender's (edge-origin) convention.
        fx, fy, cx, cy = camera.intrinsics
        self._camera.fx, self._camera.fy, self._camera.cx, self._camera.cy = fx, fy, cx + 0.5, cy + 0.5
        world_to_cam = np.eye(4)
        world_to_cam[:3, :3], world_to_cam[:3, 3] = camera.rotation, camera.translation
        self.scene.set_pose(self._camera_node, np.linalg.inv(world_to_cam) @ _CV_TO_GL)
        # 3. Lights: a directional key light (its -z axis is the direction it shines) plus ambient.
        d = lighting.direction / np.linalg.norm(lighting.direction)
        z = -d
        x = np.cross([0.0, 1.0, 0.0], z) if abs(z[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
        x /= np.linalg.norm(x)
        light_pose = np.eye(4)
        light_pose[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        self.scene.set_pose(self._light_node, light_pose)
        self._light.intensity, self._light.color = lighting.intensity, lighting.color
        self.scene.ambient_light = np.full(3, lighting.ambient)
        # 4. Draw and read back.
        color, depth = self._renderer.render(self.scene, flags=pyrender.RenderFlags.SKIP_CULL_FACES)
        self._uploaded = True
        mask = depth > 0
        return Layer(rgb=np.asarray(color[..., :3]), depth=np.asarray(depth, np.float32), mask=mask)

    def close(self) -> None:
        self._renderer.delete()
