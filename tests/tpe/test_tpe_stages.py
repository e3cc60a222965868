"""The three TPE stages end to end through the stage runner, on stick-figure datasets named by URL."""

import json

import numpy as np
import pytest

from posesyn_core.errors import ConfigError
from posesyn_core.pipeline import RunConfig
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store
from posesyn_core.tpe.train import load_torch

TRAIN = {"steps": 150, "batch_size": 32, "lr": 3e-3, "warmup": 10, "checkpoint_every": 50, "log_every": 25,
         "threads": 1, "augment": {"flip": 0.0}}  # fmt: skip


def _run(root, **sections) -> RunConfig:  # noqa: ANN001
    return RunConfig.model_validate({
        "name": "tpe-test", "root": root.as_uri(), "seed": 3, "device": "cpu",
        "stages": ["tpe-train", "finetune", "evaluate"], **sections,
    })  # fmt: skip


@pytest.fixture(scope="module")
def trained(stick_root, tmp_path_factory):
    """tpe-train -> finetune (real lab3d + 2D-only COCO + synthetic) -> evaluate, in a fresh root."""
    data = stick_root.as_uri()
    root = tmp_path_factory.mktemp("run")
    run = _run(root, **{
        "tpe-train": {**TRAIN, "datasets": [f"{data}/world/lab3d"],
                      "model": {"img_size": 32, "widths": [8, 16, 32], "head_dim": 64}},
        "finetune": {**TRAIN, "steps": 40, "real": [f"{data}/world/lab3d", f"{data}/world/coco2d"],
                     "synthetic": f"{data}/synth/dataset", "synthetic_fraction": 0.25},
        "evaluate": {"test_sets": [f"{data}/world/lab3d_test", f"{data}/world/wild_test"]},
    })  # fmt: skip
    results = {name: execute_stage(run, name) for name in ("tpe-train", "finetune", "evaluate")}
    return run, open_store(root.as_uri()), results, data


def test_tpe_train_writes_model_and_loss_log(trained):
    run, store, results, _ = trained
    assert results["tpe-train"].status == "done"
    rows = store.read_jsonl("tpe-train/loss.jsonl")
    assert [r["step"] for r in rows] == [25, 50, 75, 100, 125, 150]
    assert rows[-1]["loss"] < rows[0]["loss"]
    ckpt = load_torch(store, "tpe-train/model.pt")
    assert ckpt["config"]["img_size"] == 32 and ckpt["joint_set"] == "smpl22" and "optimizer" not in ckpt
    assert results["tpe-train"].manifest["counts"]["samples_in"] == 512


def test_finetune_mixes_real_2d_and_synthetic(trained):
    _, store, results, data = trained
    counts = results["finetune"].manifest["counts"]
    assert counts["samples_real"] == 512 + 128 and counts["samples_synthetic"] == 128
    trained_info = load_torch(store, "finetune/model.pt")["trained"]
    assert trained_info["from"] == "tpe-train/model.pt" and trained_info["synthetic_fraction"] == 0.25
    assert len(store.read_jsonl("finetune/loss.jsonl")) == 2


def test_evaluate_tables_and_the_lab_wild_gap(trained):
    run, store, results, data = trained
    report = store.read_json("evaluate/results.json")
    lab, wild = f"{data}/world/lab3d_test", f"{data}/world/wild_test"
    assert set(report["results"]) == {"tpe", "finetuned"}
    tpe = report["results"]["tpe"]
    assert tpe[lab]["all"]["n"] == 64 and set(tpe[wild]["families"]) == {"lab", "wild"}
    # A mean-pose guess is ~400 mm off; the trained TPE is much better on its own domain than on wild poses.
    assert tpe[lab]["all"]["mpjpe"] < 250
    assert tpe[wild]["families"]["wild"]["mpjpe"] > tpe[lab]["all"]["mpjpe"]
    assert tpe[lab]["all"]["pa_mpjpe"] < tpe[lab]["all"]["mpjpe"]
    assert 0 <= tpe[lab]["all"]["pck"] <= 100
    md = store.read_text("evaluate/results.md")
    assert "| tpe |" in md and "| wild |" in md
    per = store.load_npz("evaluate/per_sample/tpe/" + wild.replace("/", "_").replace(":", "") + ".npz")
    assert per["mpjpe"].shape == (64,) and per["joints3d"].shape == (64, 22, 3)
    assert np.nanmean(per["mpjpe"]) == pytest.approx(tpe[wild]["all"]["mpjpe"], abs=0.01)
    assert execute_stage(run, "evaluate").status == "skipped"  # up to date


def test_real_only_finetune_and_missing_checkpoints(trained, tmp_path):
    """`synthetic: none` fine-tunes on real data only; evaluate skips checkpoints that do not exist."""
    _, store, _, data = trained
    run = _run(tmp_path, **{
        "finetune": {**TRAIN, "steps": 10, "checkpoint": store.url_for("tpe-train/model.pt"),
                     "real": [f"{data}/world/lab3d"], "synthetic": "none"},
        "evaluate": {"checkpoints": {"real_only": "finetune/model.pt", "ghost": "nowhere/model.pt"},
                     "test_sets": [f"{data}/world/lab3d_test"], "max_samples": 16},
    }, stages=["finetune", "evaluate"])  # fmt: skip
    ft = execute_stage(run, "finetune")
    assert "samples_synthetic" not in ft.manifest["counts"]
    ev = execute_stage(run, "evaluate")
    assert ev.manifest["extra"]["skipped"] == ["ghost"]
    report = json.loads((tmp_path / "evaluate" / "results.json").read_text())
    assert list(report["results"]) == ["real_only"]


def test_bad_checkpoint_is_a_config_error(stick_root, tmp_path):
    run = _run(tmp_path, finetune={"checkpoint": "tpe-train/model.pt"}, stages=["finetune"])
    with pytest.raises(ConfigError, match="does not exist"):
        execute_stage(run, "finetune")
