"""TrainConfig: every setting of a training run, typed and validated in one place.

One model serves the three places a run is described: `chiploop train`'s options build it,
`config.yaml` is its `to_yaml` and `--resume` / `Trainer.from_run` read it back with `from_yaml`.
A bad value is one `TrainingError` line naming the field, what is allowed and what was given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from chiploop.chip.network import NetworkSpec
from chiploop.chip_profiles.model import ChipProfile
from chiploop.errors import ChipError, TrainingError
from chiploop.training import defaults
from chiploop.training.runs import RunDir

MODES = ("in_the_loop", "offline")
OPTIMIZERS = ("adam", "sgd")


def _positive_number(value: Any) -> float:
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError(f"must be a finite number > 0, got {value!r}")


def _int_at_least(low: int, optional: bool = False) -> BeforeValidator:
    def check(value: Any) -> int | None:
        if (value is None and optional) or (type(value) is int and value >= low):
            return value
        raise ValueError(f"must be an int >= {low}{' or null' if optional else ''}, got {value!r}")

    return BeforeValidator(check)


def _one_of(allowed: tuple[str, ...]) -> BeforeValidator:
    def check(value: Any) -> str:
        if value in allowed:
            return value
        raise ValueError(f"must be one of {allowed}, got {value!r}")

    return BeforeValidator(check)


def _one_or_list(kind: type, text: str, accept: Any) -> BeforeValidator:
    """A value of `kind` or a non-empty list of them (one per hidden layer), each passing `accept`."""

    def check(value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        if items and all(type(v) is kind and accept(v) for v in items):
            return value
        raise ValueError(f"must be {text} or a list of them (one per hidden layer), got {value!r}")

    return BeforeValidator(check)


PositiveNumber = Annotated[float, BeforeValidator(_positive_number)]
Count = Annotated[int, _int_at_least(1)]
Seed = Annotated[int, _int_at_least(0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NetworkConfig(_Section):
    """The network's shape as config.yaml keeps it (lists for several hidden layers)."""

    n_in: Count
    n_hidden: Annotated[int | list[int], _one_or_list(int, "an int >= 1", lambda v: v >= 1)]
    n_out: Count
    recurrent: Annotated[bool | list[bool], _one_or_list(bool, "true or false", lambda v: True)] = False
    readout: Literal["leaky", "spiking"] = "leaky"
    synapses: Literal[1, 2] = 1  # written only when 2 (config.yaml of one-current networks unchanged)

    @classmethod
    def of(cls, spec: NetworkSpec) -> NetworkConfig:
        return cls(
            n_in=spec.n_in,
            n_hidden=list(spec.n_hidden) if isinstance(spec.n_hidden, tuple) else spec.n_hidden,
            n_out=spec.n_out,
            recurrent=list(spec.recurrent) if isinstance(spec.recurrent, tuple) else spec.recurrent,
            readout=spec.readout,
            synapses=spec.synapses,
        )

    def spec(self) -> NetworkSpec:
        """The NetworkSpec; its own checks (layer count, one flag per layer) as a TrainingError."""
        try:
            return NetworkSpec(
                self.n_in,
                tuple(self.n_hidden) if isinstance(self.n_hidden, list) else self.n_hidden,
                self.n_out,
                tuple(self.recurrent) if isinstance(self.recurrent, list) else self.recurrent,
                self.readout,
                self.synapses,
            )
        except ChipError as exc:
            raise TrainingError(f"network: {str(exc).replace('NetworkSpec.', '')}") from None


class TaskConfig(_Section):
    """The task's registry name, the seed it draws its data with and its options."""

    name: str
    seed: Seed
    options: dict[str, Any] = {}


class EstimatorConfig(_Section):
    """The estimator's registry name, firing-rate regulariser (None: its default) and options."""

    name: str
    rate_reg: float | None = None
    rate_target: float | None = None
    options: dict[str, Any] = {}


class TrainConfig(_Section):
    """Every setting of a training run; `to_yaml` is config.yaml (keys in this order)."""

    profile: str
    profile_spec: ChipProfile
    network: NetworkConfig
    task: TaskConfig
    estimator: EstimatorConfig
    mode: Annotated[str, _one_of(MODES)] = defaults.MODE
    target: str = defaults.TARGET
    optimizer: Annotated[str, _one_of(OPTIMIZERS)] = defaults.OPTIMIZER
    lr: PositiveNumber = defaults.LR
    lr_decay: PositiveNumber = defaults.LR_DECAY
    batch_size: Count = defaults.BATCH_SIZE
    eval_batch_size: Count = defaults.BATCH_SIZE
    train_eval_size: Annotated[int | None, _int_at_least(1, optional=True)] = None
    init_scale: PositiveNumber = 1.0
    seed: Seed = defaults.SEED
    epochs: Annotated[int, _int_at_least(0)] = defaults.EPOCHS

    @classmethod
    def make(cls, **fields: Any) -> TrainConfig:
        """Validate `fields`; a bad value is one TrainingError line naming the field."""
        return validated(cls, fields)

    def to_yaml(self) -> dict[str, Any]:
        """The mapping config.yaml holds (plain YAML types)."""
        mapping = self.model_dump(mode="json")
        if self.network.synapses == 1:
            del mapping["network"]["synapses"]
        return mapping

    @classmethod
    def from_yaml(cls, mapping: dict[str, Any], origin: str = "config.yaml") -> TrainConfig:
        """A config.yaml mapping back as a TrainConfig; errors name `origin` and the field."""
        return validated(cls, mapping, f"{origin} is not a usable run config: ")

    @classmethod
    def read(cls, run_dir: str | Path) -> TrainConfig:
        """The TrainConfig of a run directory (its config.yaml)."""
        run = RunDir(run_dir)
        return cls.from_yaml(run.read_config(), str(run.file("config.yaml")))

    def write(self, run_dir: str | Path) -> None:
        RunDir(run_dir).write_config(self.to_yaml())


def check_settings(**values: Any) -> None:
    """Check some TrainConfig fields on their own (before the objects they configure are built)."""
    for name, value in values.items():
        adapter = TypeAdapter(TrainConfig.model_fields[name].rebuild_annotation())
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            errors = [{**err, "loc": (name, *err["loc"])} for err in exc.errors()]
            raise TrainingError("; ".join(describe(err) for err in errors)) from None


def validated(model: type[BaseModel], mapping: Any, prefix: str = "") -> Any:
    """`model.model_validate(mapping)`; a ValidationError as one TrainingError line."""
    try:
        return model.model_validate(mapping)
    except ValidationError as exc:
        raise TrainingError(prefix + "; ".join(describe(err) for err in exc.errors())) from None


def describe(err: Any) -> str:
    """One pydantic error as `field.path must be ..., got X` (profile fields: `profile_spec.x.y: ...`)."""
    loc = ".".join(str(part) for part in err["loc"] if not _is_branch(part))
    kind = err["type"]
    if kind == "value_error":
        return f"{loc} {err['ctx']['error']}" if loc else str(err["ctx"]["error"])
    if kind == "missing":
        return f"{loc}: required field missing"
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    got = f", got {err['input']!r}" if "input" in err else ""
    return f"{loc}: {err['msg'][0].lower()}{err['msg'][1:]}{got}"


def _is_branch(part: Any) -> bool:
    """A union member's name pydantic adds to a location (`int`, `list[int]`, `function-before[...]`)."""
    return isinstance(part, str) and (part in ("int", "bool", "float", "str") or "[" in part)
