"""The world stage on a tiny config: outputs, exact labels, the lab/wild split, determinism, resume, preview."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.data.motions import read_motions
from posesyn_core.geometry import project
from posesyn_core.pipeline import load_run_config
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store
from posesyn_core.world.motions import FAMILIES
from posesyn_core.world.preview import write_preview

TINY = {"lab3d": 24, "lab3d_test": 6, "wild2d": 24, "wild_test": 6, "motions": 12, "chunk_size": 12,
        "num_subjects": 3, "num_test_subjects": 2, "frames_per_clip": 4}  # fmt: skip


def build(tmp: Path, name: str, **overrides) -> Path:
    root = tmp / name
    cfg = {"name": "tiny", "root": str(root), "seed": 5, "stages": ["world"], "world": {**TINY, **overrides}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    execute_stage(load_run_config(path), "world")
    return root


def files(root: Path) -> dict[str, bytes]:
    skip = {"_SUCCESS", "_STARTED"}
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip)
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("world"), "a")


def test_outputs_and_exact_labels(world):
    store = open_store(world.as_uri())
    lab = PoseDataset(store, "world/lab3d")
    assert len(lab) == 24 and lab.joint_set == "smpl22"
    assert all(FAMILIES[s.meta["family"]].common for s in lab.samples)
    for name in ("lab3d", "lab3d_test", "wild_test"):
        a = PoseDataset(store, f"world/{name}").arrays
        err = np.abs(project(a["joints3d"], a["cameras"]) - a["joints2d"][..., :2]).max()
        assert err < 0.5, (name, err)
        assert (a["joints3d"][..., 2] > 0).all()
    wild = PoseDataset(store, "world/wild2d")
    a = wild.arrays
    assert np.isnan(a["joints3d"]).all() and np.isnan(a["cameras"]).all()  # 2D only, like a real 2D set
    hidden = store.load_npz("world/wild2d_hidden3d.npz")
    assert list(hidden["ids"]) == list(a["ids"])
    assert np.abs(project(hidden["joints3d"], hidden["cameras"]) - a["joints2d"][..., :2]).max() < 0.5
    images = [wild.image(i) for i in range(len(wild))]
    assert all(im.shape == (128, 128, 3) for im in images)
    # Test sets use held-out subjects.
    train = {s.meta["subject"] for s in lab.samples}
    test = {s.meta["subject"] for s in PoseDataset(store, "world/wild_test").samples}
    assert train.isdisjoint(test)
    clips = read_motions(store, "world/motions")
    # 3 action texts + 2 posture sentences of the key frame, worded like the caption stage's
    assert len(clips) == 12 and all(len(c.texts) == 5 for c in clips)
    postures = {c.texts[3] for c in clips}
    assert len(postures) > 1 and all(t[0].isupper() and t.endswith(".") for t in postures)
    assert min(float(c.joints[..., 1].min()) for c in clips) >= 0


def test_wild_pool_and_benchmark_have_their_own_family_mix(tmp_path):
    root = build(tmp_path, "mix", wild_unusual_fraction=0.0, wild_test_unusual_fraction=1.0)
    store = open_store(root.as_uri())

    def samples(name: str) -> list:
        return PoseDataset(store, f"world/{name}").samples

    assert all(FAMILIES[s.meta["family"]].common for s in samples("wild2d"))  # the 2D pool: everyday poses only
    assert not any(FAMILIES[s.meta["family"]].common for s in samples("wild_test"))  # the benchmark: unusual only


def test_same_seed_gives_identical_bytes_and_resume_rebuilds_only_missing_parts(world, tmp_path):
    # Another process layout (one worker) must not change a byte.
    again = build(tmp_path, "b", workers=1)
    assert files(again) == files(world)
    # Resume: drop one part and the completion marker; only that part is rebuilt, bytes unchanged.
    (again / "world" / "lab3d" / "parts" / "part-00001.jsonl").unlink()
    (again / "world" / "_SUCCESS").unlink()
    result = execute_stage(load_run_config(tmp_path / "b.yaml"), "world")
    assert result.manifest["counts"]["parts_skipped"] == len(list((world / "world").rglob("parts/part-*.jsonl"))) - 1
    assert files(again) == files(world)


def test_preview_contact_sheet(world, tmp_path):
    out = write_preview(open_store(world.as_uri()), tmp_path / "sheet.png", count=4)
    import cv2

    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[1] == 8 * 256
