"""`posesyn experiment loop` at smoke scale: round 2 runs on round 1's fine-tuned TPE, a round killed midway
resumes without redoing finished rounds, the stopping rule, and a per-round table read back from the rounds' files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import posesyn_process

pytestmark = pytest.mark.slow


def copy_run(smoke_run, tmp_path: Path, **overrides) -> tuple[Path, Path]:  # noqa: ANN001, ANN003
    root = tmp_path / "run"
    shutil.copytree(smoke_run.root, root, symlinks=True)
    cfg = yaml.safe_load(smoke_run.config.read_text())
    cfg.update(root=str(root), **overrides)
    run_yaml = tmp_path / "smoke.yaml"
    run_yaml.write_text(yaml.safe_dump(cfg))
    return root, run_yaml


def manifest(path: Path) -> dict:
    return json.loads((path / "_SUCCESS").read_text())


def results(root: Path) -> dict:
    return json.loads((root / "evaluate" / "results.json").read_text())["results"]


def test_round_two_runs_on_round_ones_model_and_resumes_after_a_kill(smoke_run, tmp_path: Path):
    root, run_yaml = copy_run(smoke_run, tmp_path, loop={"min_gain": None})
    round2 = root / "experiments" / "round-2"

    killed = posesyn_process("experiment", "loop", str(run_yaml), "--rounds", "2",
                             env={"POSESYN_FAILPOINTS": "store.after_commit@msm=kill:1"})  # fmt: skip
    assert killed.returncode != 0
    assert (round2 / "eem" / "_SUCCESS").is_file() and not (round2 / "msm" / "_SUCCESS").exists()
    eem_after_kill = (round2 / "eem" / "_SUCCESS").read_bytes()

    # Round 2's TPE is round 1's fine-tuned model, and its fingerprints hold round 1's fine-tune.
    assert os.readlink(round2 / "tpe-train") == str(root / "finetune")
    assert os.readlink(round2 / "world") == str(root / "world") and (round2 / "motion-train").is_symlink()
    assert manifest(round2 / "eem")["inputs"]["tpe-train"] == manifest(root / "finetune")["fingerprint"]
    assert (round2 / "eem" / "scores.jsonl").read_bytes() != (root / "eem" / "scores.jsonl").read_bytes()

    out = posesyn_process("experiment", "loop", str(run_yaml), "--rounds", "2", check=True).stdout
    assert (round2 / "eem" / "_SUCCESS").read_bytes() == eem_after_kill  # resumed, not redone
    for stage in ("world", "tpe-train", "motion-train", "eem", "finetune", "evaluate"):  # round 1 untouched
        assert (root / stage / "_SUCCESS").read_bytes() == (smoke_run.root / stage / "_SUCCESS").read_bytes()
    assert not any((round2 / s).is_symlink() for s in ("eem", "caption", "msm", "filter", "finetune", "evaluate"))

    table = json.loads((root / "report" / "loop.json").read_text())
    assert [r["round"] for r in table["rounds"]] == [0, 1, 2] and table["stopped"] is None
    wild = "world/wild_test"
    expected = [results(root)["tpe"], results(root)["finetuned"], results(round2)["finetuned"]]
    for row, want in zip(table["rounds"], expected, strict=True):
        assert row["sets"][wild]["mpjpe"] == pytest.approx(want[wild]["all"]["mpjpe"])
        assert row["sets"][wild]["pa_mpjpe"] == pytest.approx(want[wild]["all"]["pa_mpjpe"])
    # Round 2 starts from exactly round 1's model: its "before" row is round 1's "after".
    assert results(round2)["tpe"][wild]["all"] == results(root)["finetuned"][wild]["all"]
    second = table["rounds"][2]
    tpe_before, after = results(round2)["tpe"][wild]["all"]["mpjpe"], results(round2)["finetuned"][wild]["all"]["mpjpe"]
    assert second["gain"] == pytest.approx(1 - after / tpe_before)
    assert 0 <= second["hard_repeated"] <= 1 and sum(second["hard_families"].values()) <= 1
    kept = json.loads((round2 / "filter" / "summary.json").read_text())["kept"]
    assert second["synthetic_frames"] == kept and second["seconds"] > 0
    assert (root / "report" / "loop.png").read_bytes()[:4] == b"\x89PNG" and "| 2 |" in out

    # Finished rounds are reused: a third call runs no stage.
    markers = {p: p.read_bytes() for p in sorted(root.rglob("_SUCCESS"))}
    posesyn_process("experiment", "loop", str(run_yaml), "--rounds", "2", check=True)
    assert {p: p.read_bytes() for p in sorted(root.rglob("_SUCCESS"))} == markers

    posesyn_process("report", str(run_yaml), "--ablation-samples", "4", check=True)
    summary = (root / "report" / "summary.md").read_text()
    assert "## Rounds (`posesyn experiment loop`)" in summary and "(the TPE before fine-tuning)" in summary


def test_the_loop_stops_when_a_round_gains_too_little(smoke_run, tmp_path: Path):
    root, run_yaml = copy_run(smoke_run, tmp_path, loop={"min_gain": 0.99})
    out = posesyn_process("experiment", "loop", str(run_yaml), "--rounds", "3", check=True).stdout
    assert not (root / "experiments" / "round-2").exists()  # round 1 (the finished run) gained less than 99%
    table = json.loads((root / "report" / "loop.json").read_text())
    assert [r["round"] for r in table["rounds"]] == [0, 1]
    assert table["stopped"].startswith("stopped after round 1 of 3: it lowered mpjpe on world/wild_test by")
    assert "less than loop.min_gain 99.0%" in out
