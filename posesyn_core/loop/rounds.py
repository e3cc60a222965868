"""Rounds of the closed loop, and the table over them.

Round 1 is the run itself. Round k >= 2 runs under `<root>/experiments/round-k/` with the run's config, but only
the stages that read the TPE, directly or through another stage (eem, caption, msm, ..., evaluate): the others
(world, motion-train) are shared from the run, and the TPE's slot `tpe-train/` holds round k-1's `finetune/`
outputs (a symlink locally, server-side copies on S3), manifest included. So every stage that loads
`tpe-train/model.pt` (EEM mines the hard set again, the filter, the fine-tune starts from it, evaluate's `tpe` row)
gets round k-1's fine-tuned model, and every fingerprint downstream holds round k-1's fine-tune fingerprint: a
round whose predecessor changed is stale, never silently reused. A killed round resumes stage by stage like any
run; finished rounds are skipped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from posesyn_core.errors import ConfigError
from posesyn_core.experiment import EXPERIMENTS, Variant, load_variant, share_stage, variant_root
from posesyn_core.pipeline import RunConfigBase
from posesyn_core.stages import SUCCESS, read_marker
from posesyn_core.storage import Store, join, open_store

TPE, FINETUNE = "tpe-train", "finetune"
LOOP_INDEX = join(EXPERIMENTS, "loop.json")  # the rounds `posesyn experiment loop` ran, for the report


def tpe_readers(run: RunConfigBase) -> list[str]:
    """The run's stages that read the TPE, directly or through an upstream stage: what a round re-runs."""
    registry = type(run).registry
    readers: list[str] = []
    for stage in run.stages or []:
        if stage != TPE and any(u == TPE or u in readers for u in registry[stage].inputs):
            readers.append(stage)
    if FINETUNE not in readers or TPE not in (run.stages or []):
        raise ConfigError(f"loop: the run needs stages {TPE!r} and {FINETUNE!r} (its stages: {run.stages})")
    return readers


def round_variant(run: RunConfigBase, k: int) -> Variant:
    return Variant(f"round-{k}", {"stages": tpe_readers(run)}, f"round {k}: the TPE fine-tuned in round {k - 1}")


def round_root(base: RunConfigBase, k: int) -> str:
    return base.root if k == 1 else variant_root(base, f"round-{k}")


def prepare_round(base: RunConfigBase, k: int, round_run: RunConfigBase) -> None:
    """Share into round k's root what it does not re-run: the run's other stages, and round k-1's fine-tuned TPE
    in the TPE's slot."""
    base_store, store = open_store(base.root), open_store(round_run.root)
    previous = open_store(round_root(base, k - 1))
    if read_marker(previous, join(FINETUNE, SUCCESS)) is None:
        raise ConfigError(f"loop: round {k - 1} has no finished {FINETUNE} under {previous.url} (run it first)")
    for stage in base.stages or []:
        if stage != TPE and stage not in (round_run.stages or []):
            share_stage(base_store, store, stage)
    share_stage(previous, store, FINETUNE, as_stage=TPE)


def round_gain(store: Store, run: RunConfigBase) -> float | None:
    """How much round's fine-tune lowered the watched error relative to the TPE it started from (its evaluate
    `tpe` row: the round before's model), or None when the round has no such result."""
    key = join("evaluate", "results.json")
    if not store.exists(key):
        return None
    results = store.read_json(key)["results"]
    loop = run.loop
    try:
        before = results["tpe"][loop.test_set]["all"][loop.metric]
        after = results["finetuned"][loop.test_set]["all"][loop.metric]
    except KeyError:
        raise ConfigError(f"loop.test_set {loop.test_set!r}: not evaluated in {store.url} "
                          f"(evaluate.test_sets: {run.evaluate.test_sets})") from None  # fmt: skip
    return None if before is None or after is None else float(1 - after / before)


def _hard_ids(store: Store) -> set[str]:
    key = join("eem", "challenging.jsonl")
    return {r["id"] for r in store.read_jsonl(key)} if store.exists(key) else set()


def loop_table(base: RunConfigBase, rounds: int, stopped: str | None = None) -> dict:
    """Round 0 (the TPE before any fine-tuning) and rounds 1..`rounds`: MPJPE / PA-MPJPE of the round's fine-tuned
    TPE on every test set, its gain on the watched metric, its hard set (top families, share of samples already in
    the round before's), kept synthetic frames and the seconds of the round's own stages. Read from the rounds'
    files only."""
    readers = tpe_readers(base)
    out: dict = {"metric": base.loop.metric, "test_set": base.loop.test_set, "min_gain": base.loop.min_gain,
                 "stopped": stopped, "rounds": []}  # fmt: skip
    previous_hard: set[str] = set()
    for k in range(1, rounds + 1):
        store = open_store(round_root(base, k))
        key = join("evaluate", "results.json")
        if not store.exists(key):
            break
        results = store.read_json(key)["results"]
        if k == 1:
            out["rounds"].append({"round": 0, "sets": {t: v["all"] for t, v in results["tpe"].items()}})
        hard = _hard_ids(store)
        eem = store.read_json(join("eem", "summary.json"))
        families = Counter(eem["families"]["challenging"])
        total = max(1, sum(families.values()))
        kept = (read_marker(store, join("filter", "summary.json")) or {}).get("kept")
        seconds = sum((read_marker(store, join(s, SUCCESS)) or {}).get("seconds") or 0.0 for s in readers)
        out["rounds"].append({
            "round": k, "sets": {t: v["all"] for t, v in results["finetuned"].items()},
            "gain": round_gain(store, base),
            "hard_families": {f: round(n / total, 4) for f, n in families.most_common(3)},
            "hard_repeated": len(hard & previous_hard) / len(hard) if k > 1 and hard else None,
            "synthetic_frames": kept, "seconds": round(seconds, 1),
        })  # fmt: skip
        previous_hard = hard
    return out


def loop_markdown(result: dict) -> str:
    rows = result["rounds"]
    if not rows:
        return "_no finished round yet_\n"
    sets = sorted(rows[0]["sets"], key=lambda t: "wild" not in t)
    head = "| round | " + " | ".join(f"{t} MPJPE | {t} PA-MPJPE" for t in sets)
    lines = [head + f" | {result['metric']} gain | hard set: top families | hard samples also in the round "
             "before | synthetic frames | seconds |", "|---|" + "---|---|" * len(sets) + "---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r['sets'][t][m]:.1f}" if r["sets"].get(t, {}).get(m) is not None else "n/a"
                 for t in sets for m in ("mpjpe", "pa_mpjpe")]  # fmt: skip
        if r["round"] == 0:
            cells += ["", "(the TPE before fine-tuning)", "", "", ""]
        else:
            fams = ", ".join(f"{f} {s:.0%}" for f, s in r["hard_families"].items())
            cells += ["n/a" if r["gain"] is None else f"{r['gain']:+.1%}", fams,
                      "" if r["hard_repeated"] is None else f"{r['hard_repeated']:.0%}",
                      str(r["synthetic_frames"] or ""), f"{r['seconds']:.0f}"]  # fmt: skip
        lines.append(f"| {r['round']} | " + " | ".join(cells) + " |")
    lines += ["", "gain: how much the round lowered the error of the TPE it started from, on "
              f"{result['test_set']}"]  # fmt: skip
    if result.get("stopped"):
        lines.append(result["stopped"])
    return "\n".join(lines) + "\n"


def loop_figure(result: dict) -> bytes:
    """MPJPE and PA-MPJPE per round, one panel per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from posesyn_core.report.build import png_bytes

    rows = result["rounds"]
    sets = sorted(rows[0]["sets"], key=lambda t: "wild" not in t)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.2), squeeze=False)
    x = [r["round"] for r in rows]
    for ax, t in zip(axes[0], sets, strict=True):
        for m, label in (("mpjpe", "MPJPE"), ("pa_mpjpe", "PA-MPJPE")):
            ax.plot(x, [r["sets"][t].get(m, np.nan) for r in rows], marker="o", label=label)
        ax.set_xticks(x)
        ax.set_xlabel("round (0 = before fine-tuning)")
        ax.set_ylabel("mm")
        ax.set_title(t)
        ax.legend(fontsize=7)
    return png_bytes(fig)


def read_loop(base: RunConfigBase) -> dict | None:
    """The table over the rounds `posesyn experiment loop` ran (listed in experiments/loop.json), or None."""
    store = open_store(base.root)
    if not store.exists(LOOP_INDEX):
        return None
    index = store.read_json(LOOP_INDEX)
    return loop_table(base, index["rounds"], index.get("stopped"))


def load_round(run_yaml: Path, base: RunConfigBase, k: int) -> tuple[Path, RunConfigBase]:
    return load_variant(run_yaml, round_variant(base, k))


def run_rounds(run_yaml: Path, base: RunConfigBase, rounds: int, force: bool, console) -> tuple[dict, int]:  # noqa: ANN001
    """Run rounds 1..`rounds` (stopping early by `loop.min_gain`), then write the table under `<root>/report/`.
    Returns the table and an exit code (the first failed stage's, else 0)."""
    from posesyn_core.errors import EXIT_OK
    from posesyn_core.lease import holding
    from posesyn_core.report.build import REPORT
    from posesyn_core.runner import run_pipeline, select_stages

    loop, store = base.loop, open_store(base.root)
    stopped, ran = None, 0
    with holding(store) as lease:  # the run's root: round 1 and the table; each later round holds its own
        for k in range(1, rounds + 1):
            console.rule(f"round {k} of {rounds}")
            if k == 1:
                results = run_pipeline(run_yaml.resolve(), base, select_stages(base), lease, force=force,
                                       console=console)  # fmt: skip
                round_store = store
            else:
                path, run = load_round(run_yaml, base, k)
                round_store = open_store(run.root)
                with holding(round_store) as round_lease:
                    prepare_round(base, k, run)
                    console.print(f"TPE: round {k - 1}'s fine-tuned model; running {', '.join(run.stages or [])}")
                    results = run_pipeline(path, run, list(run.stages or []), round_lease, force=force,
                                           console=console)  # fmt: skip
            failed = [r.exit_code for r in results if r.exit_code != EXIT_OK]
            if failed:
                return loop_table(base, ran), failed[0]
            ran = k
            gain = round_gain(round_store, base)
            if k < rounds and loop.min_gain is not None and gain is not None and gain < loop.min_gain:
                stopped = (f"stopped after round {k} of {rounds}: it lowered {loop.metric} on {loop.test_set} by "
                           f"{gain:+.1%}, less than loop.min_gain {loop.min_gain:.1%}")  # fmt: skip
                break
        store.write_json(LOOP_INDEX, {"rounds": ran, "requested": rounds, "stopped": stopped})
        result = loop_table(base, ran, stopped)
        store.write_json(join(REPORT, "loop.json"), result)
        store.write_text(join(REPORT, "loop.md"), loop_markdown(result))
        if result["rounds"]:
            store.write_bytes(join(REPORT, "loop.png"), loop_figure(result))
    return result, EXIT_OK
