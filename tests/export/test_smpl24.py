"""SMPL's 24 joints (the export's `smpl24`) from a synthetic SMPL file: the first 22 are `forward`'s joints, the
two hands follow the wrists, in the same frame."""

from __future__ import annotations

import numpy as np
import torch
from smpl_synthetic import write_synthetic_smpl

from posesyn_core.body import load_body_model


def test_joints24_extend_forward_by_the_hands(tmp_path):
    body = load_body_model("smpl", write_synthetic_smpl(tmp_path / "SMPL_SYNTHETIC.pkl"))
    rng = np.random.default_rng(0)
    pose = torch.as_tensor(rng.normal(0, 0.3, (4, 21, 3)), dtype=torch.float32)
    shape = torch.as_tensor(body.random_shapes(rng, 4))
    orient = torch.as_tensor(rng.normal(0, 1.0, (4, 3)), dtype=torch.float32)
    transl = torch.as_tensor(rng.normal(0, 1.0, (4, 3)) + [0, 0, 4], dtype=torch.float32)
    with torch.no_grad():
        joints = body.forward(pose, shape, orient, transl, vertices=False).joints
        joints24 = body.joints24(pose, shape, orient, transl)
    assert joints24.shape == (4, 24, 3)
    np.testing.assert_allclose(joints24[:, :22], joints, atol=1e-5)
    # The hands are rigidly attached to the wrists: posed, turned and moved, each keeps its rest distance.
    with torch.no_grad():
        rest = body.joints24(torch.zeros(4, 21, 3), shape)
    hand = (joints24[:, 22:] - joints24[:, 20:22]).norm(dim=-1)
    np.testing.assert_allclose(hand, (rest[:, 22:] - rest[:, 20:22]).norm(dim=-1), atol=1e-5)
    assert (hand > 0.05).all()
