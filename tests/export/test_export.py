"""`posesyn export` on a small real run (retarget -> animate -> filter, real stages): the shards read back with the
`webdataset` library and the COCO layout with a plain JSON reader, every label compared with the run's own files;
missing and corrupted frames reported, resume at shard granularity, settings guarded, S3 against the real S3
test server."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from posesyn_core.data.dataset import PoseDataset
from posesyn_core.errors import ConfigError
from posesyn_core.export.records import coco17_from_smpl22
from posesyn_core.export.run import export_run
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "animate"))
from test_animate_render import make_motions, make_references  # noqa: E402

NUM_MOTIONS, FRAMES, SHARD = 4, 5, 6  # 20 frames -> shards of 6, 6, 6, 2


def _config(root: Path) -> RunConfig:
    return RunConfig.model_validate({
        "name": "export-test", "root": root.as_uri(), "stages": ["retarget", "animate", "filter"],
        "retarget": {"references": "refs/references.jsonl", "frames_per_motion": FRAMES, "motions_per_chunk": 3},
        "animate": {"render": {"workers": 1}, "frames_per_part": 10},
        "filter": {"tau_mm": None, "estimator": {"path": "tpe-train/model.pt"}},
        "finetune": {"real": ["refs"]},
    })  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch

    from posesyn_core.body import load_body_model
    from posesyn_core.tpe.model import TPE, TPEConfig, checkpoint_dict
    from posesyn_core.tpe.train import save_torch

    root = tmp_path_factory.mktemp("export-run")
    store = open_store(root.as_uri())
    body = load_body_model("anny", decimate_cell=0.02)
    make_references(store, body)
    make_motions(store, body, NUM_MOTIONS)
    torch.manual_seed(0)
    save_torch(store, "tpe-train/model.pt", checkpoint_dict(TPE(TPEConfig())))  # an untrained TPE scores frames
    cfg = _config(root)
    for stage in ("retarget", "animate", "filter"):
        execute_stage(cfg, stage, store=store)
    return cfg, store


def _read_webdataset(urls: list[str]) -> list[dict]:
    import webdataset as wds

    return list(wds.WebDataset(urls, shardshuffle=False))


def _expected(store):
    """The run's own labels: kept frames, their body-model parameters and filter errors."""
    ds = PoseDataset(store, "filter/dataset")
    errors = {r["id"]: r["error_mm"] for r in store.read_jsonl("filter/errors.jsonl")}
    return ds, errors


def test_webdataset_shards_hold_every_label(run, tmp_path):
    cfg, store = run
    index = export_run(cfg, "webdataset", (tmp_path / "wds").as_uri(), shard_size=SHARD)
    assert index["samples"] == index["exported"] == NUM_MOTIONS * FRAMES and index["skipped"] == 0
    assert index["shards"] == [f"shard-{k:06d}.tar" for k in range(4)]
    samples = _read_webdataset([str(tmp_path / "wds" / s) for s in index["shards"]])
    ds, errors = _expected(store)
    assert [json.loads(s["json"])["id"] for s in samples] == [s.id for s in ds.samples]
    chunks = {}
    for s, want in zip(samples, ds.samples, strict=True):
        rec = json.loads(s["json"])
        assert s["jpg"] == store.read_bytes(f"filter/dataset/{want.image}")  # the stored bytes, not re-encoded
        assert rec["source"] == "synthetic" and rec["caption"] == want.caption
        assert rec["hard_pose_id"] == want.meta["challenging_id"] and rec["motion_id"] == want.meta["motion_id"]
        assert rec["frame"] == want.meta["frame"] and rec["filter_error_mm"] == errors[want.id]
        np.testing.assert_allclose(rec["joints"]["smpl22"]["3d"], want.joints3d, atol=1e-6)
        np.testing.assert_allclose(rec["joints"]["smpl22"]["2d"], want.joints2d, atol=1e-3)
        coco = rec["joints"]["coco17"]
        np.testing.assert_allclose(coco["3d"], coco17_from_smpl22(np.asarray(want.joints3d)), atol=1e-6)
        np.testing.assert_allclose(coco["3d"][5], want.joints3d[16], atol=1e-6)  # left shoulder
        assert rec["camera"]["intrinsics"] == {k: pytest.approx(v) for k, v in want.camera.items()}
        fit = want.meta["fit"]
        chunk = chunks.setdefault(fit["chunk"], store.load_npz(fit["chunk"]))
        body = rec["body_model"]
        assert body["name"] == "anny" and "smpl24" not in rec["joints"]  # SMPL's hands only for SMPL fits
        np.testing.assert_allclose(body["body_pose"], chunk["body_pose"][fit["row"], fit["slot"]], atol=1e-6)
        np.testing.assert_allclose(body["transl"], chunk["transl"][fit["row"], fit["slot"]], atol=1e-6)
        np.testing.assert_allclose(body["shape"], chunk["shape"][fit["row"]], atol=1e-6)


def test_coco3d_layout_reads_with_plain_json(run, tmp_path):
    cfg, store = run
    out = tmp_path / "coco"
    index = export_run(cfg, "coco3d", out.as_uri(), shard_size=SHARD, include_real=True)
    ds, _ = _expected(store)
    real = PoseDataset(store, "refs")
    assert index["synthetic_samples"] == len(ds) and index["real_samples"] == len(real)
    coco = json.loads((out / "annotations.json").read_text())
    assert coco["categories"][0]["keypoints"][:3] == ["nose", "left_eye", "right_eye"]
    assert len(coco["images"]) == len(coco["annotations"]) == len(ds) + len(real)
    expected = [*ds.samples, *real.samples]
    for image, ann, want in zip(coco["images"], coco["annotations"], expected, strict=True):
        assert ann["image_id"] == image["id"] and (out / image["file_name"]).is_file()
        assert ann["posesyn"]["id"] == want.id and ann["bbox"] == pytest.approx(want.bbox)
        np.testing.assert_allclose(np.reshape(ann["keypoints_3d"], (17, 3)),
                                   coco17_from_smpl22(np.asarray(want.joints3d)), atol=1e-6)  # fmt: skip
        assert len(ann["keypoints"]) == 51 and ann["num_keypoints"] == sum(v == 2 for v in ann["keypoints"][2::3])
        assert ann["cam_param"]["focal"] == [want.camera["fx"], want.camera["fy"]]
    assert {a["posesyn"]["source"] for a in coco["annotations"][len(ds):]} == {"real"}
    assert coco["annotations"][len(ds)]["posesyn"]["body_model"] is None


def test_missing_and_corrupted_frames_are_reported_not_lost(run, tmp_path):
    cfg, store = run
    root = tmp_path / "broken"
    shutil.copytree(cfg.root.removeprefix("file://"), root)
    broken = open_store(root.as_uri())
    ds = PoseDataset(broken, "filter/dataset")
    gone, garbled = ds.samples[3], ds.samples[11]
    broken.delete(f"filter/dataset/{gone.image}")
    broken.write_bytes(f"filter/dataset/{garbled.image}", b"\xff\xd8 not a jpeg")
    out = tmp_path / "wds"
    index = export_run(_config(root), "webdataset", out.as_uri(), shard_size=SHARD)
    assert index["exported"] == len(ds) - 2 and index["skipped"] == 2
    assert index["exported"] + index["skipped"] == index["samples"] == len(ds)
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["id"], s["reason"].split(":")[0].split(" (")[0]) for s in skipped] == [
        (gone.id, "missing image"), (garbled.id, "corrupted image")]
    ids = [json.loads(s["json"])["id"] for s in _read_webdataset([str(out / s) for s in index["shards"]])]
    assert gone.id not in ids and garbled.id not in ids and len(ids) == len(ds) - 2


def test_resume_rewrites_only_missing_shards_and_guards_settings(run, tmp_path):
    cfg, _ = run
    out = tmp_path / "wds"
    export_run(cfg, "webdataset", out.as_uri(), shard_size=SHARD)
    before = {p.name: p.read_bytes() for p in out.glob("shard-*.tar")}
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    (out / "shard-000002.tar").unlink()
    (out / "shard-000002.done.json").unlink()  # a run killed while writing shard 2
    export_run(cfg, "webdataset", out.as_uri(), shard_size=SHARD)
    assert {p.name: p.read_bytes() for p in out.glob("shard-*.tar")} == before  # byte-identical
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert {n for n in again if again[n] != stamps.get(n)} == {"shard-000002.tar", "shard-000002.done.json"}
    with pytest.raises(ConfigError, match="other settings"):
        export_run(cfg, "webdataset", out.as_uri(), shard_size=4)
    index = export_run(cfg, "webdataset", out.as_uri(), shard_size=4, force=True)
    assert len(index["shards"]) == 5 and not (out / "shard-000005.tar").exists()


def test_export_to_s3(run, s3_bucket, tmp_path):
    import boto3

    cfg, _ = run
    index = export_run(cfg, "webdataset", f"s3://{s3_bucket}/exports/run1", shard_size=SHARD)
    client = boto3.client("s3")
    local = []
    for name in index["shards"]:
        path = tmp_path / name
        client.download_file(s3_bucket, f"exports/run1/{name}", str(path))
        local.append(str(path))
    assert len(_read_webdataset(local)) == index["exported"] == NUM_MOTIONS * FRAMES
    body = client.get_object(Bucket=s3_bucket, Key="exports/run1/index.json")["Body"].read()
    assert json.load(io.BytesIO(body))["skipped"] == 0


def test_cli_export(run, tmp_path):
    from tests.conftest import invoke_assert_code

    cfg, _ = run
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(json.dumps(cfg.model_dump(mode="json", exclude_unset=True)))
    invoke_assert_code(["export", str(run_yaml), "--format", "coco3d", "--out", str(tmp_path / "c"),
                        "--joint-sets", "smpl22,coco17"], output_contains="20 samples exported")  # fmt: skip
    invoke_assert_code(["export", str(run_yaml), "--format", "coco3d", "--out", str(tmp_path / "c"),
                        "--joint-sets", "smpl99"], 2, output_contains="unknown ['smpl99']")  # fmt: skip
