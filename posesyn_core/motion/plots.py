"""Skeleton strip: a motion drawn as a row of side-view stick figures (for reports and quick looks)."""

from __future__ import annotations

import io

import numpy as np

from posesyn_core.skeleton import KINEMATIC_CHAIN

# right leg, left leg, spine, right arm, left arm
CHAIN_COLORS = ("#d62728", "#1f77b4", "#333333", "#ff7f0e", "#17becf")


def skeleton_strip_png(joints: np.ndarray, title: str = "", panels: int = 8, fps: int = 20) -> bytes:
    """(L, 22, 3) joints (y up) -> PNG bytes: `panels` evenly spaced frames projected on the z-y plane (a side
    view of motions in HumanML3D's canonical frame, which face +z at frame 0: bending and stepping show), each
    centred on its root."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3) or len(joints) == 0:
        raise ValueError(f"joints must be (L > 0, 22, 3), got {joints.shape}")
    frames = np.unique(np.linspace(0, len(joints) - 1, min(panels, len(joints))).round().astype(int))
    fig, axes = plt.subplots(1, len(frames), figsize=(1.6 * len(frames), 3.2), squeeze=False)
    lo, hi = joints[..., 1].min() - 0.05, joints[..., 1].max() + 0.1
    for ax, f in zip(axes[0], frames, strict=True):
        pose = joints[f] - joints[f, 0] * np.array([1.0, 0.0, 1.0])  # centre each panel on its root
        for chain, color in zip(KINEMATIC_CHAIN, CHAIN_COLORS, strict=True):
            ax.plot(pose[list(chain), 2], pose[list(chain), 1], "-o", color=color, lw=2, ms=2)
        ax.axhline(0.0, color="#999999", lw=0.8)
        ax.set_xlim(-0.9, 0.9)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{f / fps:.1f}s", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
