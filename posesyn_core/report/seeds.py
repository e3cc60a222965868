"""The run's comparisons over seeds: (a)-(d) in each seed's run, their mean and spread over seeds, and how much
(c) PoseSyn gains over (d) random selection and over (b) real-only fine-tuning, with paired-bootstrap intervals
over the test samples of every seed.

Seed `base.seed` is the run itself; seed k is the variant `seed-k` (`posesyn experiment seeds`), a whole run of
its own: world, models, synthesis. Two sources of uncertainty, kept apart: the spread over seeds (training and
world randomness) and the interval over test samples (which poses the benchmark happened to draw).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posesyn_core.errors import ConfigError
from posesyn_core.experiment import EXPERIMENTS, seed_variant, variant_root
from posesyn_core.metrics import improvement_interval
from posesyn_core.pipeline import RunConfigBase
from posesyn_core.report.build import COMPARISON, results_table
from posesyn_core.storage import Store, join, open_store

METRICS = ("mpjpe", "pa_mpjpe")
# (key, label, variant folder or None for the seed's run, evaluate estimator): (a)-(d) of the paper's comparison.
ROWS = tuple((c[0][:3], *c) for c in COMPARISON if c[0][:3] in ("(a)", "(b)", "(c)", "(d)"))
PAIRS = (("(c)", "(d)"), ("(c)", "(b)"))
SEEDS_INDEX = join(EXPERIMENTS, "seeds.json")  # the seeds `posesyn experiment seeds` ran, for the report


def seed_root(base: RunConfigBase, seed: int) -> str:
    return base.root if seed == base.seed else variant_root(base, seed_variant(seed).name)


def candidate_row(name: str) -> tuple[str, str, str, str]:
    """A method change measured beside (c) in every seed: the variant `name` of each seed's run."""
    return name, f"candidate {name}", name, "finetuned"


def _per_sample(store: Store, variant: str | None, estimator: str, test_set: str) -> dict[str, np.ndarray]:
    base = store if variant is None else open_store(store.url.rstrip("/") + f"/{EXPERIMENTS}/{variant}")
    key = join("evaluate", "per_sample", estimator, test_set.replace("/", "_").replace(":", "") + ".npz")
    return base.load_npz(key)


def over_seeds(base: RunConfigBase, seeds: Sequence[int], candidates: Sequence[str] = ()) -> dict:
    """Per-seed figures of (a)-(d) and of each candidate variant, their mean and sample standard deviation over
    seeds, and the gains of (c) over (d) and (b) (and of each candidate over (d) and (c)): per seed, pooled over
    every seed's test samples, and the pooled gain's 95% interval (paired bootstrap, samples redrawn within their
    seed). A comparison some seed lacks is listed in `missing`."""
    if not seeds:
        raise ConfigError("over_seeds: no seeds given")
    rows_wanted = [*ROWS, *(candidate_row(c) for c in candidates)]
    pairs_wanted = [*PAIRS, *((c, ref) for c in candidates for ref in ("(d)", "(c)"))]
    per_seed: dict[int, dict[str, dict]] = {}
    test_sets: list[str] = []
    for seed in seeds:
        rows, sets = results_table(open_store(seed_root(base, seed)), extra=[r[1:] for r in rows_wanted[len(ROWS):]])
        by_label = {r["label"]: r for r in rows}
        per_seed[seed] = {key: by_label[label] for key, label, *_ in rows_wanted if label in by_label}
        test_sets = test_sets or sets
    missing = sorted({f"{key} (seed {s})" for s in seeds for key, *_ in rows_wanted if key not in per_seed[s]})
    out: dict = {"seeds": list(seeds), "candidates": list(candidates), "test_sets": test_sets, "rows": [],
                 "pairs": [], "missing": missing}  # fmt: skip
    complete = [r for r in rows_wanted if all(r[0] in per_seed[s] for s in seeds)]
    for key, label, _, _ in complete:
        sets = {}
        for t in test_sets:
            sets[t] = {}
            for m in METRICS:
                values = [float(per_seed[s][key]["sets"][t][m]) for s in seeds]
                sets[t][m] = {"per_seed": values, "mean": float(np.mean(values)),
                              "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}  # fmt: skip
        out["rows"].append({"key": key, "label": label, "sets": sets})
    have = {r[0]: r for r in complete}
    for cand, ref in pairs_wanted:
        if cand not in have or ref not in have:
            continue
        sets = {}
        for t in test_sets:
            sets[t] = {}
            arrays = {}
            for s in seeds:
                root = open_store(seed_root(base, s))
                a = _per_sample(root, *have[cand][2:], t)
                b = _per_sample(root, *have[ref][2:], t)
                if not np.array_equal(a["ids"], b["ids"]):
                    raise ConfigError(f"seed {s}, {t}: {cand} and {ref} were evaluated on different samples")
                arrays[s] = (a, b)
            for m in METRICS:
                # Samples where either side has no value are left out of both, as evaluate's means leave them out.
                pairs = [(a[m][ok], b[m][ok]) for a, b in (arrays[s] for s in seeds)
                         for ok in [np.isfinite(a[m]) & np.isfinite(b[m])]]  # fmt: skip
                c, r = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
                groups = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(pairs)])
                lo, hi = improvement_interval(c, r, groups=groups)
                sets[t][m] = {"per_seed": [float(1 - p[0].mean() / p[1].mean()) for p in pairs],
                              "pooled": float(1 - c.mean() / r.mean()), "ci95": [lo, hi]}  # fmt: skip
        out["pairs"].append({"candidate": cand, "baseline": ref, "candidate_label": have[cand][1],
                             "baseline_label": have[ref][1], "sets": sets})  # fmt: skip
    return out


def seeds_markdown(result: dict) -> str:
    """Two tables per test set: (a)-(d) as mean ± sd over seeds, and the gains of (c) with their intervals."""
    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = []
    for t in sorted(result["test_sets"], key=lambda t: "wild" not in t):  # the wild benchmark first
        lines += [f"### {t}, seeds {seeds} (mm, mean ± sd over seeds; per seed in brackets)", "",
                  "| | MPJPE | PA-MPJPE |", "|---|---|---|"]  # fmt: skip
        for row in result["rows"]:
            cells = []
            for m in METRICS:
                v = row["sets"][t][m]
                spread = "" if v["sd"] is None else f" ± {v['sd']:.1f}"
                cells.append(f"{v['mean']:.1f}{spread} [{', '.join(f'{x:.1f}' for x in v['per_seed'])}]")
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        if result["pairs"]:
            lines += ["", "| gain (lower error) | MPJPE | PA-MPJPE |", "|---|---|---|"]
            for pair in result["pairs"]:
                cells = []
                for m in METRICS:
                    v = pair["sets"][t][m]
                    lo, hi = v["ci95"]
                    cells.append(f"{v['pooled']:+.1%} (95% interval {lo:+.1%} to {hi:+.1%}; per seed "
                                 + ", ".join(f"{x:+.1%}" for x in v["per_seed"]) + ")")  # fmt: skip
                lines.append(f"| {pair['candidate']} vs {pair['baseline']} | " + " | ".join(cells) + " |")
        lines.append("")
    if result["missing"]:
        lines.append("missing (run `posesyn experiment seeds`): " + ", ".join(result["missing"]))
    return "\n".join(lines).rstrip() + "\n"


def read_over_seeds(base: RunConfigBase) -> dict | None:
    """The table over the seeds `posesyn experiment seeds` ran (listed in experiments/seeds.json), or None."""
    store = open_store(base.root)
    if not store.exists(SEEDS_INDEX):
        return None
    index = store.read_json(SEEDS_INDEX)
    return over_seeds(base, index["seeds"], list(index.get("candidates", {})))
