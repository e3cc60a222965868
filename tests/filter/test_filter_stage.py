"""The filter stage on a small rendered dataset with a tiny real TPE: tau sweep, shards, output dataset."""

from __future__ import annotations

import numpy as np
import pytest

from posesyn_core.data.dataset import PoseDataset, PoseSample, write_dataset
from posesyn_core.filter.stage import pass_rates, root_relative_error_mm
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store
from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict
from posesyn_core.tpe.train import save_torch

N = 24


def make_frames(store, n: int = N) -> None:
    """A smpl22 dataset of randomly posed ANNY bodies rendered by the world renderer (exact 3D labels)."""
    import torch

    from posesyn_core.body import JOINT_LIMITS, load_body_model
    from posesyn_core.render.camera import Camera, look_at
    from posesyn_core.render.frame import render_frame
    from posesyn_core.render.mesh_renderer import MeshRenderer

    rng = np.random.default_rng(0)
    body = load_body_model("anny", decimate_cell=0.03)
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    pose = torch.as_tensor(lo + (hi - lo) * rng.uniform(0.2, 0.8, (n, 21, 3)), dtype=torch.float32)
    with torch.no_grad():
        out, _ = body.stand_on_floor(pose, torch.as_tensor(body.random_shapes(rng, n)))
    renderer = MeshRenderer(64, 64, body.faces, body.num_vertices)
    colors = np.tile([0.7, 0.5, 0.4, 1.0], (body.num_vertices, 1)).astype(np.float32)
    samples, images = [], []
    for i in range(n):
        rot, trans = look_at(np.array([rng.uniform(-2, 2), 1.0, 3.5]), np.array([0.0, 0.9, 0.0]))
        f = render_frame(renderer, out.vertices[i].numpy(), out.joints[i].numpy(), colors,
                         Camera(np.array([500.0, 500.0, 320.0, 240.0]), rot, trans), "lab", rng)  # fmt: skip
        ys, xs = np.nonzero(f.mask)
        samples.append(PoseSample(id=f"syn-{i:03d}", image=f"images/syn-{i:03d}.jpg", width=64, height=64,
                                  bbox=[float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                                  joints2d=f.joints2d.tolist(), joints3d=f.joints3d.tolist(),
                                  camera=f.camera.as_dict(), meta={"family": ["a", "b"][i % 2]}))  # fmt: skip
        images.append(f.image)
    renderer.close()
    write_dataset(store, "animate/dataset", "animate", "smpl22", samples, images)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("filter-run")
    store = open_store(path.as_uri())
    make_frames(store)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    save_torch(store, "tpe-train/model.pt", checkpoint_dict(TPE(TPEConfig(img_size=32, widths=(4, 8), head_dim=16))))
    return path


def _run(root, **section) -> tuple[dict, object]:
    run = RunConfig.model_validate({"name": "filter-test", "root": root.as_uri(), "stages": ["filter"],
                                    "filter": section})  # fmt: skip
    store = open_store(root.as_uri())
    execute_stage(run, "filter", store=store)
    return store.read_json("filter/summary.json"), store


def test_root_relative_error_ignores_translation():
    rng = np.random.default_rng(0)
    label = rng.normal(0, 0.3, (5, 22, 3))
    assert np.allclose(root_relative_error_mm(label + [1.0, 2.0, 3.0], label), 0)
    shifted = label.copy()
    shifted[:, 1:] += [0.0, 0.0, 0.05]  # every non-root joint 5 cm off: mean over 22 joints = 21/22 * 50 mm
    assert np.allclose(root_relative_error_mm(shifted, label), 50 * 21 / 22)


def test_filter_writes_errors_dataset_and_histogram(root):
    summary, store = _run(root, tau_mm=120.0)
    errors = store.read_jsonl("filter/errors.jsonl")
    assert len(errors) == N and summary["frames"] == N
    kept_ids = [e["id"] for e in errors if e["kept"]]
    assert all((e["error_mm"] <= 120.0) == e["kept"] for e in errors)
    ds = PoseDataset(store, "filter/dataset")
    assert [s.id for s in ds.samples] == kept_ids and ds.joint_set == "smpl22"
    if kept_ids:
        assert ds.image(0).shape == (64, 64, 3)
    assert store.read_bytes("filter/error_histogram.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(summary["pass_rate_by_family"]) == {"a", "b"}


def test_no_tau_keeps_every_frame_and_still_measures(root):
    summary, store = _run(root, tau_mm=None)
    errors = store.read_jsonl("filter/errors.jsonl")
    assert summary["tau_mm"] is None and summary["kept"] == N and summary["pass_rate"] == 1.0
    assert all(e["kept"] for e in errors) and len({e["error_mm"] for e in errors}) > 1
    assert [s.id for s in PoseDataset(store, "filter/dataset").samples] == [e["id"] for e in errors]
    assert store.read_bytes("filter/error_histogram.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_tau_sweep_changes_pass_rate_monotonically(root):
    _, store = _run(root, tau_mm=120.0)
    errors = np.array([e["error_mm"] for e in store.read_jsonl("filter/errors.jsonl")])
    taus = [float(np.percentile(errors, q)) for q in (10, 40, 70)] + [float(errors.max()) + 1]
    rates = [_run(root, tau_mm=t)[0]["pass_rate"] for t in taus]
    assert all(a < b for a, b in zip(rates, rates[1:], strict=False)), (taus, rates)
    assert rates[-1] == 1.0
    sweep = list(pass_rates(errors, (50, 100, 200, 400, 800)).values())
    assert sweep == sorted(sweep)


def test_shards_score_the_same_frames(root):
    _, store = _run(root, tau_mm=150.0)
    one = store.read_jsonl("filter/errors.jsonl")
    _, store = _run(root, tau_mm=150.0, shards=3)
    assert store.read_jsonl("filter/errors.jsonl") == one
