"""Variants of a run that reuse its completed stages: baselines, ablations, parameter sweeps.

A variant is the base run config with a few keys overridden (`eem.selection=random`). It runs under
`<root>/experiments/<variant>/`. Stages are visited in pipeline order; every stage whose fingerprint under the
variant equals the base run's completed one (same section, same upstream fingerprints) is shared into the
variant root instead of recomputed (a symlink on local storage, server-side copies on S3). So a stage the
overrides do not reach (motion-train when only the TPE changes) is shared even after a changed one; the others
run for real, through the same embedded runner.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from posesyn_core.config import read_yaml
from posesyn_core.errors import ConfigError
from posesyn_core.pipeline import RunConfigBase, field_name, load_run_config
from posesyn_core.stages import SUCCESS, fingerprint, input_fingerprints, read_marker
from posesyn_core.storage import LocalStore, S3Store, Store, join, open_store

EXPERIMENTS = "experiments"


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]  # dotted key -> value, e.g. {"eem.selection": "random"}
    description: str


# The paper's comparisons, run by `posesyn experiment ablations`.
ABLATIONS = (
    Variant("real-only", {"finetune.synthetic": "none"}, "(b) fine-tuned on real data only, same steps"),
    Variant("random", {"eem.selection": "random"}, "(d) random 2D samples instead of EEM, same synthetic budget"),
    Variant("text-only", {"msm.conditioning": "text"}, "MSM without MR_init (text only)"),
    Variant("consistency", {"msm.consistency": {"max_pose_mm": 180.0, "min_caption_score": 0.0}},
            "MSM's consistency check: motions drifted from their hard pose or caption dropped before animate"),
    *(Variant(f"tau-{t}", {"filter.tau_mm": float(t)}, f"filter threshold tau = {t} mm")
      for t in (40, 80, 120, 160, 200)),
)


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value` with a YAML value (numbers, booleans, lists)."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    return key.strip(), yaml.safe_load(value)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted}: {p} is not a mapping")
        node[last] = value
    return out


def variant_config_path(base_yaml: Path, base: RunConfigBase, variant: Variant) -> Path:
    """Write the variant's YAML next to the base one (in a hidden folder) and return its path."""
    data = read_yaml(base_yaml)
    data = apply_overrides(data, variant.overrides)
    data["name"] = f"{base.name}-{variant.name}"[:40].rstrip("-")
    data["root"] = variant_root(base, variant.name)
    folder = base_yaml.parent / ".posesyn-variants"
    folder.mkdir(exist_ok=True)
    path = folder / f"{base_yaml.stem}.{variant.name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def variant_root(base: RunConfigBase, name: str) -> str:
    return base.root.rstrip("/") + f"/{EXPERIMENTS}/{name}"


def share_stage(src: Store, dst: Store, stage: str, as_stage: str | None = None) -> None:
    """Make `stage`'s outputs in `src` visible in `dst`, under the same keys or under `as_stage`/ instead."""
    name = as_stage or stage
    if isinstance(src, LocalStore) and isinstance(dst, LocalStore):
        link = dst.root / name
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == src.root / stage:
                return
            dst.delete_prefix(name)
            if link.is_symlink():
                link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(src.root / stage, target_is_directory=True)
        return
    dst.delete_prefix(name)
    for key in src.list(stage):
        dst_key = name + key[len(stage):]
        if isinstance(src, S3Store) and isinstance(dst, S3Store):
            dst.client.copy_object(Bucket=dst.bucket, Key=join(dst.prefix, dst_key),
                                   CopySource={"Bucket": src.bucket, "Key": join(src.prefix, key)})  # fmt: skip
        else:
            with src.open_read(key) as f_in, dst.open_write(dst_key) as f_out:
                f_out.write(f_in.read())


def prepare_variant(base: RunConfigBase, variant_run: RunConfigBase) -> list[str]:
    """Share every stage whose outputs the variant would recompute identically. Returns their names."""
    base_store, var_store = open_store(base.root), open_store(variant_run.root)
    shared = []
    for stage in variant_run.stages or []:
        spec = type(variant_run).registry[stage]
        done = read_marker(base_store, join(stage, SUCCESS))
        try:
            fp = fingerprint(spec, variant_run, input_fingerprints(spec, variant_run, var_store))
        except ConfigError:  # an input the variant has not produced yet: this stage runs
            continue
        if not done or done["fingerprint"] != fp:
            continue
        share_stage(base_store, var_store, stage)
        shared.append(stage)
    return shared


def load_variant(base_yaml: Path, variant: Variant) -> tuple[Path, RunConfigBase]:
    base = load_run_config(base_yaml)
    for dotted in variant.overrides:
        section = dotted.split(".")[0]
        if not hasattr(base, field_name(section)):
            raise ConfigError(f"variant {variant.name}: {section!r} is not a stage of this pipeline")
    path = variant_config_path(base_yaml, base, variant)
    return path, load_run_config(path)


def seed_variant(seed: int) -> Variant:
    """The whole run again with another seed: a world, models and synthesis of its own (the seed is in every
    stage's fingerprint, so nothing is shared with the base run)."""
    return Variant(f"seed-{seed}", {"seed": seed}, f"the whole run with seed {seed}")
