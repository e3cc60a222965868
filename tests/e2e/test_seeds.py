"""`posesyn experiment seeds` at smoke scale: a second seed with its own world and models, the baselines of both,
and a table over seeds whose every figure is read back from the runs' own files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from posesyn_core.metrics import improvement_interval
from tests.conftest import PIPELINE, posesyn_process

pytestmark = pytest.mark.slow


def posesyn(*args: str) -> subprocess.CompletedProcess:
    return posesyn_process(*args, check=True)


def per_sample(root: Path, variant: str | None, estimator: str) -> dict[str, np.ndarray]:
    base = root if variant is None else root / "experiments" / variant
    with np.load(base / "evaluate" / "per_sample" / estimator / "world_wild_test.npz") as f:
        return dict(f)


def test_two_seeds_with_their_baselines_give_the_table_over_seeds(smoke_run, tmp_path: Path):
    root = tmp_path / "run"
    shutil.copytree(smoke_run.root, root, symlinks=True)
    cfg = yaml.safe_load(smoke_run.config.read_text())
    cfg["root"] = str(root)
    run_yaml = tmp_path / "smoke.yaml"
    run_yaml.write_text(yaml.safe_dump(cfg))

    out = posesyn("experiment", "seeds", str(run_yaml), "--seeds", "0,1", "--candidate", "mixed",
                  "--set", "eem.everyday_share=0.5").stdout
    seed1 = root / "experiments" / "seed-1"
    roots = {0: root, 1: seed1}
    for stage in PIPELINE:
        assert json.loads((seed1 / stage / "_SUCCESS").read_text())["stage"] == stage
        assert not (seed1 / stage).is_symlink()  # another seed shares nothing with the run
        assert (root / stage / "_SUCCESS").read_bytes() == (smoke_run.root / stage / "_SUCCESS").read_bytes()
    wild = "world/wild_test/samples.jsonl"
    assert (root / wild).read_bytes() != (seed1 / wild).read_bytes()  # a world of its own
    for r in roots.values():
        for variant in ("real-only", "random"):
            assert (r / "experiments" / variant / "evaluate" / "results.json").is_file()

    table = json.loads((root / "report" / "seeds.json").read_text())
    assert table["seeds"] == [0, 1] and table["missing"] == [] and table["candidates"] == ["mixed"]
    where = {"(a)": (None, "tpe"), "(b)": ("real-only", "finetuned"), "(c)": (None, "finetuned"),
             "(d)": ("random", "finetuned"), "mixed": ("mixed", "finetuned")}  # fmt: skip
    assert [row["key"] for row in table["rows"]] == list(where)
    for r in roots.values():  # the candidate: each seed's run with the key set, half its budget below the cut
        hard = [json.loads(line) for line in (r / "experiments" / "mixed" / "eem" / "challenging.jsonl").open()]
        assert [h["selected"] for h in hard].count("everyday") == len(hard) // 2
    for row in table["rows"]:
        variant, estimator = where[row["key"]]
        for metric in ("mpjpe", "pa_mpjpe"):
            values = []
            for r in roots.values():
                base = r if variant is None else r / "experiments" / variant
                results = json.loads((base / "evaluate" / "results.json").read_text())["results"]
                values.append(results[estimator]["world/wild_test"]["all"][metric])
            got = row["sets"]["world/wild_test"][metric]
            assert got["per_seed"] == pytest.approx(values)
            assert got["mean"] == pytest.approx(np.mean(values)) and got["sd"] == pytest.approx(np.std(values, ddof=1))

    pairs = {(p["candidate"], p["baseline"]): p for p in table["pairs"]}
    assert set(pairs) == {("(c)", "(d)"), ("(c)", "(b)"), ("mixed", "(d)"), ("mixed", "(c)")}
    for metric in ("mpjpe", "pa_mpjpe"):
        c = [per_sample(r, *where["(c)"])[metric] for r in roots.values()]
        d = [per_sample(r, *where["(d)"])[metric] for r in roots.values()]
        got = pairs[("(c)", "(d)")]["sets"]["world/wild_test"][metric]
        pooled_c, pooled_d = np.concatenate(c), np.concatenate(d)
        assert got["pooled"] == pytest.approx(1 - pooled_c.mean() / pooled_d.mean())
        assert got["per_seed"] == pytest.approx([1 - a.mean() / b.mean() for a, b in zip(c, d, strict=True)])
        groups = np.concatenate([np.full(len(a), i) for i, a in enumerate(c)])
        assert got["ci95"] == pytest.approx(list(improvement_interval(pooled_c, pooled_d, groups=groups)))
        assert got["ci95"][0] <= got["pooled"] <= got["ci95"][1]
    assert "(c) vs (d)" in out and "95% interval" in out and "mean ± sd over seeds" in out
    assert "mixed vs (d)" in out and "| candidate mixed |" in out
    m = [per_sample(r, "mixed", "finetuned")["mpjpe"] for r in roots.values()]
    got = pairs[("mixed", "(c)")]["sets"]["world/wild_test"]["mpjpe"]
    c = [per_sample(r, None, "finetuned")["mpjpe"] for r in roots.values()]
    assert got["pooled"] == pytest.approx(1 - np.concatenate(m).mean() / np.concatenate(c).mean())

    # Done seeds are reused: a second call runs no stage.
    markers = {p: p.read_bytes() for p in sorted(root.rglob("_SUCCESS"))}
    posesyn("experiment", "seeds", str(run_yaml), "--seeds", "0,1")
    assert {p: p.read_bytes() for p in sorted(root.rglob("_SUCCESS"))} == markers
    assert json.loads((root / "report" / "seeds.json").read_text())["candidates"] == ["mixed"]  # kept

    posesyn("report", str(run_yaml), "--ablation-samples", "4")
    summary = (root / "report" / "summary.md").read_text()
    assert "## Over seeds" in summary and "world/wild_test, seeds 0, 1" in summary


def test_a_seed_without_its_baselines_is_listed_as_missing(smoke_run):
    from posesyn_core.pipeline import load_run_config
    from posesyn_core.report.seeds import over_seeds, seeds_markdown

    result = over_seeds(load_run_config(smoke_run.config), [0])  # the finished run, no baselines beside it
    assert [row["key"] for row in result["rows"]] == ["(a)", "(c)"] and result["pairs"] == []
    assert result["missing"] == ["(b) (seed 0)", "(d) (seed 0)"]
    row = result["rows"][1]["sets"]["world/wild_test"]["mpjpe"]
    assert row["sd"] is None and row["per_seed"] == [row["mean"]]  # one seed: no spread to show
    assert "missing (run `posesyn experiment seeds`): (b) (seed 0), (d) (seed 0)" in seeds_markdown(result)
