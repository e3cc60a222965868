"""COCO / MPII importers on small real files: good samples cropped correctly, bad ones quarantined with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from posesyn_core.data.coco import import_coco, read_coco_detections
from posesyn_core.data.commands import data_group
from posesyn_core.data.dataset import PoseDataset
from posesyn_core.data.import2d import ImportOptions
from posesyn_core.errors import DataError
from posesyn_core.storage import open_store
from tests.conftest import invoke_assert_code


def _write_image(path: Path, h: int, w: int, gray: bool = False, value: int = 0) -> np.ndarray:
    rng = np.random.default_rng(value)
    img = rng.integers(0, 255, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return img


def _coco_kp(x0: float, y0: float, vis: int = 2) -> list[float]:
    """17 keypoints laid out in a 60x120 px person starting at (x0, y0)."""
    out = []
    for j in range(17):
        out += [x0 + 10 + (j % 4) * 12, y0 + 5 + j * 6.5, vis]
    return out


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    _write_image(tmp_path / "img" / "color.jpg", 200, 300)
    _write_image(tmp_path / "img" / "gray.png", 240, 160, gray=True, value=1)
    _write_image(tmp_path / "outside.jpg", 50, 50)  # exists, but outside the image folder
    (tmp_path / "img" / "broken.jpg").write_bytes(b"not an image")
    nan_kp = _coco_kp(20, 20)
    nan_kp[3] = float("nan")
    far_kp = _coco_kp(20, 20)
    far_kp[0] = 5000.0
    data = {
        "images": [
            {"id": 1, "file_name": "color.jpg", "width": 300, "height": 200},
            {"id": 2, "file_name": "gray.png", "width": 160, "height": 240},
            {"id": 3, "file_name": "missing.jpg", "width": 100, "height": 100},
            {"id": 4, "file_name": "../outside.jpg", "width": 50, "height": 50},
            {"id": 5, "file_name": "broken.jpg", "width": 100, "height": 100},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "keypoints": _coco_kp(30, 40), "bbox": [30, 40, 60, 120], "iscrowd": 0},
            {"id": 11, "image_id": 1, "keypoints": _coco_kp(150, 50, vis=1), "bbox": [150, 50, 60, 120]},
            {"id": 12, "image_id": 2, "keypoints": _coco_kp(40, 60), "bbox": [40, 60, 60, 120]},
            {"id": 13, "image_id": 3, "keypoints": _coco_kp(10, 10), "bbox": [10, 10, 60, 80]},
            {"id": 14, "image_id": 4, "keypoints": _coco_kp(1, 1), "bbox": [1, 1, 40, 40]},
            {"id": 15, "image_id": 99, "keypoints": _coco_kp(1, 1), "bbox": [1, 1, 40, 40]},
            {"id": 16, "image_id": 1, "keypoints": nan_kp, "bbox": [20, 20, 60, 120]},
            {"id": 17, "image_id": 1, "keypoints": far_kp, "bbox": [20, 20, 60, 120]},
            {"id": 18, "image_id": 1, "keypoints": [0.0] * 51, "bbox": [20, 20, 60, 120]},
            {"id": 19, "image_id": 5, "keypoints": _coco_kp(10, 10), "bbox": [10, 10, 60, 80]},
            {"id": 20, "image_id": 1, "keypoints": _coco_kp(10, 10), "bbox": [0, 0, 300, 200], "iscrowd": 1},
        ],
    }
    (tmp_path / "img" / "person_keypoints.json").write_text(json.dumps(data))
    return tmp_path


def test_coco_import_keeps_good_and_quarantines_bad(coco_dir: Path, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    summary = import_coco(coco_dir / "img" / "person_keypoints.json", coco_dir / "img", store, "coco", "coco",
                          ImportOptions(crop_scale=1.2, part_size=2))  # fmt: skip
    assert summary["accepted"] == 3
    reasons = {r["id"]: r["reason"] for r in store.read_jsonl("coco/rejected.jsonl")}
    assert reasons == {
        "coco-13": "missing image file",
        "coco-14": "image path escapes the image folder",
        "coco-15": "unknown image id",
        "coco-16": "non-finite keypoints",
        "coco-17": "keypoints far outside the image",
        "coco-18": "no visible joints",
        "coco-19": "unreadable image",
        "coco-20": "crowd region",
    }
    ds = PoseDataset(store, "coco")
    assert ds.joint_set == "coco17" and len(ds) == 3 and ds.info["num_parts"] == 2
    s = {x.id: x for x in ds.samples}
    # Crop of annotation 10: box 60x120 at (30, 40) enlarged 1.2x around its centre -> origin (24, 28).
    assert s["coco-10"].meta["crop"] == [24, 28, 96, 172]
    kp = np.array(s["coco-10"].joints2d)
    np.testing.assert_allclose(kp[0], [30 + 10 - 24, 40 + 5 - 28, 1.0])
    assert (kp[:, 2] == 1).all()  # v=2 and v=1 (occluded but labelled) both become visibility 1
    assert (np.array(s["coco-11"].joints2d)[:, 2] == 1).all()
    img = ds.image(ds.index()["coco-12"])  # grayscale source comes back as 3-channel RGB
    assert img.shape == (s["coco-12"].height, s["coco-12"].width, 3)
    assert np.allclose(ds.arrays["bboxes"][ds.index()["coco-10"]], [6, 12, 60, 120])


def test_coco_detections_replace_the_labels(coco_dir: Path, tmp_path: Path) -> None:
    """A detector's keypoint results on the COCO file's images: its labels are never read."""
    confident = _coco_kp(32, 44)
    confident[2::3] = [0.9] * 16 + [0.1]  # the last keypoint scores too low to count as visible
    detections = [
        {"image_id": 1, "category_id": 1, "keypoints": confident, "score": 0.95},
        {"image_id": 2, "category_id": 1, "keypoints": _coco_kp(40, 60, vis=1), "score": 0.3},  # below --min-score
        {"image_id": 99, "category_id": 1, "keypoints": _coco_kp(1, 1), "score": 0.9},
        {"image_id": 1, "category_id": 1, "keypoints": [1.0] * 10, "score": 0.9},
    ]
    (tmp_path / "det.json").write_text(json.dumps(detections))
    store = open_store(str(tmp_path / "out"))
    summary = import_coco(coco_dir / "img" / "person_keypoints.json", coco_dir / "img", store, "det", "det",
                          ImportOptions(crop_scale=1.2), detections=tmp_path / "det.json", min_score=0.5)  # fmt: skip
    assert summary["accepted"] == 1
    reasons = {r["id"]: r["reason"] for r in store.read_jsonl("det/rejected.jsonl")}
    assert reasons == {"coco-det2": "unknown image id", "coco-det3": "wrong number of keypoints"}
    (sample,) = PoseDataset(store, "det").samples
    assert sample.id == "coco-det0" and sample.meta["source"] == "coco-detections" and sample.meta["score"] == 0.95
    kp = np.array(sample.joints2d)
    assert (kp[:16, 2] == 1).all() and kp[16, 2] == 0
    np.testing.assert_allclose(kp[0, :2] + sample.meta["crop"][:2], [32 + 10, 44 + 5])
    (tmp_path / "bad.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match="not a COCO keypoint results file"):
        list(read_coco_detections(coco_dir / "img" / "person_keypoints.json", tmp_path / "bad.json"))


def test_large_images_are_downscaled_with_keypoints(tmp_path: Path) -> None:
    _write_image(tmp_path / "big.jpg", 1200, 1000)
    kp = np.zeros((17, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(200, 800, 17), np.linspace(100, 1100, 17), 2
    data = {"images": [{"id": 1, "file_name": "big.jpg", "width": 1000, "height": 1200}],
            "annotations": [{"id": 1, "image_id": 1, "keypoints": kp.ravel().tolist(), "bbox": [200, 100, 600, 1000]}]}
    (tmp_path / "a.json").write_text(json.dumps(data))
    store = open_store(str(tmp_path / "out"))
    import_coco(tmp_path / "a.json", tmp_path, store, "d", opts=ImportOptions(crop_scale=1.0, max_side=250))
    ds = PoseDataset(store, "d")
    s = ds.samples[0]
    assert max(s.width, s.height) == 250
    np.testing.assert_allclose(np.array(s.joints2d)[-1, :2], [(800 - 200) * 0.25, (1100 - 100) * 0.25], atol=1e-3)


def _mpii_row(image: str, joints: list, vis: list, layout: str) -> dict:
    if layout == "hrnet":
        return {"image": image, "center": [101.0, 101.0], "scale": 0.8, "joints": joints, "joints_vis": vis}
    return {"img_paths": image, "objpos": [101.0, 101.0], "scale_provided": 0.8, "isValidation": 0.0,
            "joint_self": [[x, y, v] for (x, y), v in zip(joints, vis, strict=True)]}  # fmt: skip


@pytest.mark.parametrize("layout", ["hrnet", "bearpaw"])
def test_mpii_import_both_json_layouts(tmp_path: Path, layout: str) -> None:
    _write_image(tmp_path / "images" / "000001.jpg", 240, 220)
    joints = [[51.0 + 8 * j, 31.0 + 9 * j] for j in range(16)]
    vis = [1] * 16
    vis[9] = 0
    joints[9] = [-1.0, -1.0]  # unlabelled head top, as MPII writes it
    rows = [
        _mpii_row("000001.jpg", joints, vis, layout),
        _mpii_row("000002.jpg", joints, vis, layout),  # missing file
        _mpii_row("000001.jpg", joints, [0] * 16, layout),  # zero visible joints
        {"image": "000001.jpg"},  # malformed
    ]
    (tmp_path / "annot").mkdir()
    (tmp_path / "annot" / "train.json").write_text(json.dumps(rows))
    out = tmp_path / "mpii-out"
    result = CliRunner().invoke(data_group, ["import", "mpii", str(tmp_path / "annot" / "train.json"), str(out),
                                             "--crop-scale", "1.0", "--max-bad-fraction", "0.8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 samples written" in result.output and "3 quarantined" in result.output
    store = open_store(str(out))
    ds = PoseDataset(store, "")
    assert ds.joint_set == "mpii16" and ds.samples[0].id == "mpii-000000"
    s = ds.samples[0]
    # Box: side 200 * 0.8 = 160 around centre (100, 100) (1-based -> 0-based) -> crop origin (20, 20).
    assert s.meta["crop"] == [20, 20, 180, 180]
    kp = np.array(s.joints2d)
    np.testing.assert_allclose(kp[0], [50 - 20, 30 - 20, 1])
    assert kp[9, 2] == 0
    reasons = sorted(r["reason"] for r in store.read_jsonl("rejected.jsonl"))
    assert reasons == ["malformed annotation row", "missing image file", "no visible joints"]


def test_too_many_bad_annotations_fail_with_exit_code(coco_dir: Path, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    with pytest.raises(DataError, match="quarantined"):
        import_coco(coco_dir / "img" / "person_keypoints.json", coco_dir / "img", store, "c", max_bad_fraction=0.1)
    invoke_assert_code(["data", "import", "coco", str(coco_dir / "img" / "person_keypoints.json"), str(tmp_path / "o2"),
                        "--max-bad-fraction", "0.1"], ret_code=3)  # fmt: skip
    invoke_assert_code(["data", "import", "coco", str(coco_dir / "img" / "person_keypoints.json"), str(tmp_path / "o3"),
                        "--max-bad-fraction", "1"], output_contains="3 samples written")  # fmt: skip
