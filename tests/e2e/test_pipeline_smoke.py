"""The whole pipeline, every stage for real, at a tiny scale: run, a baseline variant, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def posesyn(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "posesyn_core.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert proc.returncode == 0, f"posesyn {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
    return proc


def test_smoke_pipeline_end_to_end(tmp_path: Path):
    cfg = yaml.safe_load((REPO / "examples" / "smoke.yaml").read_text())
    cfg["root"] = str(tmp_path / "run")
    run_yaml = tmp_path / "smoke.yaml"
    run_yaml.write_text(yaml.safe_dump(cfg))

    posesyn("run", str(run_yaml))
    root = tmp_path / "run"
    stages = ["world", "tpe-train", "motion-train", "eem", "caption", "msm", "retarget", "animate", "filter",
              "finetune", "evaluate"]  # fmt: skip
    for stage in stages:
        manifest = json.loads((root / stage / "_SUCCESS").read_text())
        assert manifest["stage"] == stage and manifest["fingerprint"]
    assert json.loads((root / "filter" / "_SUCCESS").read_text())["counts"]["kept"] > 0

    posesyn("experiment", "ablations", str(run_yaml), "--only", "real-only")
    variant = root / "experiments" / "real-only"
    assert (variant / "world").is_symlink() and (variant / "filter").is_symlink()  # reused, not recomputed
    assert (variant / "evaluate" / "results.json").is_file()

    out = posesyn("report", str(run_yaml), "--ablation-samples", "8").stdout
    ablation = json.loads((root / "report" / "mrinit_ablation_8.json").read_text())
    assert ablation["num_motions"] == 2 and ablation["num_samples"] == 8
    assert "(a) TPE before fine-tuning" in out and "(b) fine-tuned on real data only" in out
    assert "(c) PoseSyn (EEM-selected)" in out
    page = (root / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    facts = json.loads((root / "report" / "facts.json").read_text())
    ours = {r["label"][:3]: r for r in facts["results"]}
    results = json.loads((root / "evaluate" / "results.json").read_text())["results"]
    # The table is the evaluate stage's numbers, not typed in.
    assert ours["(a)"]["sets"]["world/wild_test"]["mpjpe"] == results["tpe"]["world/wild_test"]["all"]["mpjpe"]

    assert "95% interval" in (root / "report" / "summary.md").read_text()

    # A cached ablation from an older version of its fields is recomputed, so the report has them all.
    assert "the transformer sees a hard pose only this well" in (root / "report" / "summary.md").read_text()
    ablation.update(version=2)
    del ablation["variants"]["text+mrinit"]["mrinit_roundtrip_mm"]
    (root / "report" / "mrinit_ablation_8.json").write_text(json.dumps(ablation))
    posesyn("report", str(run_yaml), "--ablation-samples", "8")
    recomputed = json.loads((root / "report" / "mrinit_ablation_8.json").read_text())
    assert recomputed["version"] == 3 and "mrinit_roundtrip_mm" in recomputed["variants"]["text+mrinit"]

    # A re-run msm with another config invalidates the report's cached MR_init ablation.
    cfg["msm"]["num_motions"] = 3
    run_yaml.write_text(yaml.safe_dump(cfg))
    posesyn("run", str(run_yaml), "--only", "msm")
    posesyn("report", str(run_yaml), "--ablation-samples", "8")
    assert json.loads((root / "report" / "mrinit_ablation_8.json").read_text())["num_motions"] == 3
