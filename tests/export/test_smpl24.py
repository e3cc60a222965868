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


def test_fit_reader_gives_smpl24_of_smpl_fits(tmp_path):
    """Frames fitted with SMPL get SMPL's 24 joints in the export, in the labels' camera frame."""
    from posesyn_core.export.records import FitReader
    from posesyn_core.storage import open_store

    model = write_synthetic_smpl(tmp_path / "SMPL_SYNTHETIC.pkl")
    body = load_body_model("smpl", model)
    rng = np.random.default_rng(1)
    m, f = 2, 3  # a retarget chunk: 2 motions of 3 frames
    chunk = {"body_pose": rng.normal(0, 0.3, (m, f, 21, 3)).astype(np.float32),
             "global_orient": rng.normal(0, 1, (m, f, 3)).astype(np.float32),
             "transl": (rng.normal(0, 1, (m, f, 3)) + [0, 0, 4]).astype(np.float32),
             "shape": body.random_shapes(rng, m)}  # fmt: skip
    with torch.no_grad():
        labels = body.forward(torch.as_tensor(chunk["body_pose"]).reshape(-1, 21, 3),
                              torch.as_tensor(chunk["shape"])[:, None].expand(m, f, -1).reshape(m * f, -1),
                              torch.as_tensor(chunk["global_orient"]).reshape(-1, 3),
                              torch.as_tensor(chunk["transl"]).reshape(-1, 3), vertices=False).joints  # fmt: skip
    store = open_store(tmp_path.as_uri())
    store.save_npz("retarget/chunk-00000.npz", **chunk)
    reader = FitReader(store, "smpl", str(model))
    fit = reader({"chunk": "retarget/chunk-00000.npz", "row": 1, "slot": 2})
    assert fit.model == "smpl" and fit.joints24.shape == (24, 3)
    np.testing.assert_allclose(fit.joints24[:22], labels.reshape(m, f, 22, 3)[1, 2], atol=1e-5)
    np.testing.assert_allclose(fit.body_pose, chunk["body_pose"][1, 2])
