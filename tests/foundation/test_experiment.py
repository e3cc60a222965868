"""Variants reuse every stage of the base run their overrides do not reach and re-run the others."""

from __future__ import annotations

import os

import yaml

from posesyn_core.experiment import Variant, apply_overrides, load_variant, parse_override, prepare_variant
from posesyn_core.pipeline import load_run_config
from posesyn_core.stages import execute_stage
from posesyn_core.storage import open_store
from tests.foundation.test_stages_runner import write_cfg


def test_overrides_parse_and_apply():
    assert parse_override("filter.tau_mm=80") == ("filter.tau_mm", 80)
    assert apply_overrides({"a": {"b": 1}}, {"a.c": [1, 2]}) == {"a": {"b": 1, "c": [1, 2]}}


def test_variant_shares_upstream_and_reruns_changed_stage(tmp_path):
    cfg = write_cfg(tmp_path, stages=["draw", "total", "square"], draw={"chunks": 2, "items": 10})
    base = load_run_config(cfg)
    for stage in base.stages:
        execute_stage(base, stage)
    path, run = load_variant(cfg, Variant("double", {"total.scale": 2.0}, "x2"))
    assert yaml.safe_load(path.read_text())["total"]["scale"] == 2.0
    # square comes after the changed stage but does not depend on it: shared too
    assert prepare_variant(base, run) == ["draw", "square"]
    shared_dir = tmp_path / "out" / "experiments" / "double" / "draw"
    assert shared_dir.is_symlink() and os.readlink(shared_dir) == str(tmp_path / "out" / "draw")
    assert execute_stage(run, "draw").status == "skipped"
    assert execute_stage(run, "total").status == "done"
    base_sum = open_store(base.root).read_json("total/total.json")["sum"]
    assert open_store(run.root).read_json("total/total.json")["sum"] == 2 * base_sum


def test_the_builtin_experiment_variants_are_valid_configs_of_the_demo(tmp_path):
    """Every built-in variant (ablations, the keypoints2d pair) loads as a valid config of the demo run."""
    import shutil
    from pathlib import Path

    from posesyn_core.eem.keypoints2d import KEYPOINT_ESTIMATOR, estimated_variant
    from posesyn_core.experiment import ABLATIONS

    demo = tmp_path / "demo.yaml"
    shutil.copy(Path(__file__).parents[2] / "examples" / "demo.yaml", demo)
    base = load_run_config(demo)
    for variant in (*ABLATIONS, KEYPOINT_ESTIMATOR, estimated_variant(base)):
        _, run = load_variant(demo, variant)
        assert run.root == base.root + f"/experiments/{variant.name}"
    _, kp = load_variant(demo, KEYPOINT_ESTIMATOR)
    assert kp.stages == ["world", "tpe-train"] and kp.section("tpe-train").datasets == ["world/lab3d"]
    _, est = load_variant(demo, estimated_variant(base))
    eem = est.section("eem")
    assert eem.keypoints2d == "estimated" and eem.keypoints_estimator.path == kp.root + "/tpe-train/model.pt"
    _, checked = load_variant(demo, next(v for v in ABLATIONS if v.name == "consistency"))
    assert checked.section("msm").consistency.enabled
