"""The stage registry and the `RunConfig` model assembled from it.

Built-in stages are listed in pipeline order below; their specs live next to their domain code in
`posesyn_core/<domain>/config.py` (light modules: no torch at import). A run config may name `plugins`: modules
imported before validation that call `register(spec)` to add stages of their own (tests do this too).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from posesyn_core.animate.config import SPEC as ANIMATE_SPEC
from posesyn_core.caption.config import SPEC as CAPTION_SPEC
from posesyn_core.config import Device, StrictModel, format_validation_error, read_yaml
from posesyn_core.eem.config import SPEC as EEM_SPEC
from posesyn_core.errors import ConfigError
from posesyn_core.filter.config import SPEC as FILTER_SPEC
from posesyn_core.loop.config import LoopSection
from posesyn_core.motion.config import MOTION_TRAIN_SPEC
from posesyn_core.msm.config import SPEC as MSM_SPEC
from posesyn_core.retarget.config import SPEC as RETARGET_SPEC
from posesyn_core.stages import StageSpec
from posesyn_core.tpe.config import EVALUATE as EVALUATE_SPEC
from posesyn_core.tpe.config import FINETUNE as FINETUNE_SPEC
from posesyn_core.tpe.config import TPE_TRAIN as TPE_TRAIN_SPEC
from posesyn_core.world.config import WORLD as WORLD_SPEC

BUILTIN_SPECS: list[StageSpec] = [WORLD_SPEC, TPE_TRAIN_SPEC, MOTION_TRAIN_SPEC, EEM_SPEC, CAPTION_SPEC, MSM_SPEC,
                                  RETARGET_SPEC, ANIMATE_SPEC, FILTER_SPEC, FINETUNE_SPEC, EVALUATE_SPEC]

STAGES: dict[str, StageSpec] = {}


def field_name(stage: str) -> str:
    return stage.replace("-", "_")


class RunConfigBase(StrictModel):
    """Keys every run has. `RunConfig` adds one section per registered stage, keyed by the stage name."""

    registry: ClassVar[dict[str, StageSpec]] = {}

    name: str = Field(..., description="Run name: lowercase letters, digits and '-' (used in Kubernetes names).")
    root: str = Field(..., description="Storage root: file:///abs/path, a path relative to this file, or s3://b/p.")
    seed: int = Field(0, ge=0, description="Seed of every random choice in the run.")
    device: Device = Field("auto", description="Torch device for every stage: auto = CUDA when present.")
    stages: list[str] | None = Field(None, description="Stages to run, in pipeline order (default: all).")
    max_bad_fraction: float = Field(
        0.05, ge=0, le=1, description="Fail a stage when more than this fraction of its input samples is bad."
    )
    plugins: list[str] = Field(default_factory=list, description="Modules that register extra stages.")
    loop: LoopSection = Field(default_factory=LoopSection, description="Rounds of `posesyn experiment loop`.")

    @field_validator("name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", v):
            raise ValueError("must be 1-40 lowercase letters, digits or '-', starting and ending alphanumeric")
        return v

    @model_validator(mode="after")
    def _check_stages(self) -> RunConfigBase:
        order = list(self.registry)
        if self.stages is None:
            self.stages = order
        unknown = [s for s in self.stages if s not in self.registry]
        if unknown:
            raise ValueError(f"stages: unknown stage(s) {unknown}; known: {order}")
        if self.stages != sorted(self.stages, key=order.index) or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages: must be unique and in pipeline order {order}")
        for name in self.stages:
            section = self.section(name)
            if section.shards > 1 and not self.registry[name].shardable:
                raise ValueError(f"{name}.shards: stage {name!r} cannot be sharded")
        return self

    def section(self, stage: str) -> Any:
        return getattr(self, field_name(stage))


def build_run_config(specs: list[StageSpec]) -> type[RunConfigBase]:
    fields: dict[str, Any] = {
        field_name(s.name): (s.section, Field(default_factory=s.section, alias=s.name, description=s.description))
        for s in specs
    }
    model = create_model("RunConfig", __base__=RunConfigBase, **fields)
    model.registry = {s.name: s for s in specs}
    return model


def register(spec: StageSpec) -> None:
    """Add a stage (plugins call this at import). Re-registering the same name replaces it."""
    global RunConfig
    STAGES[spec.name] = spec
    RunConfig = build_run_config(list(STAGES.values()))


for _spec in BUILTIN_SPECS:
    STAGES[_spec.name] = _spec
RunConfig: type[RunConfigBase] = build_run_config(list(STAGES.values()))


def load_run_config(path: str | Path) -> RunConfigBase:
    """Read and validate a run YAML; every problem is a ConfigError naming the file and the key."""
    path = Path(path)
    data = read_yaml(path)
    for module in data.get("plugins") or []:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"{path}: plugins: cannot import {module!r}: {e}") from None
    root = data.get("root")
    if isinstance(root, str) and "://" not in root and not Path(root).is_absolute():
        data["root"] = (path.parent / root).resolve().as_uri()
    elif isinstance(root, str) and "://" not in root:
        data["root"] = Path(root).as_uri()
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path))) from None


def dump_run_config(run: RunConfigBase) -> str:
    """YAML of a validated config (defaults filled in), e.g. for the Helm chart's ConfigMap."""
    import yaml

    return yaml.safe_dump(run.model_dump(mode="json", by_alias=True), sort_keys=False)
