"""A search space for ``ragtune tune``: dotted config keys, each a list of values (categorical) or a numeric range,
optionally only under a condition on keys before it::

    space:
      chunking.size: [128, 256, 512]                               # categorical
      retrieval.mode: [fts, vector, hybrid]
      retrieval.fusion: {values: [rrf, linear], if: {retrieval.mode: hybrid}}
      retrieval.rrf_k: {low: 10, high: 120, log: true, if: {retrieval.fusion: rrf}}    # int: both ends are ints
      retrieval.weight: {low: 0.1, high: 0.9, if: {retrieval.fusion: linear}}          # float
      rerank.model: [null, cross-encoder]
      rerank.depth: {low: 10, high: 50, step: 10, if: {rerank.model: cross-encoder}}

A key under a condition that does not hold keeps the base configuration's value (and is not sampled: Optuna's
samplers handle such conditional spaces). A condition names keys earlier in the space (it holds when that key was
drawn with one of the values: ``rrf_k`` above is drawn only when the mode is hybrid and the fusion RRF) or keys of
the base configuration; a condition's value may be a list (any of them).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragtune.config import RagConfig, flatten
from ragtune.errors import ConfigError


class Param(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    values: list[Any] | None = Field(None, min_length=1, description="categorical: the values to choose from")
    low: int | float | None = None  # both ends ints (and the step, if any): an int range
    high: int | float | None = None
    step: int | float | None = Field(None, gt=0)
    log: bool = False
    when: dict[str, Any] = Field(default_factory=dict, alias="if", description="dotted key -> value or [values]")

    @model_validator(mode="after")
    def _kind(self) -> Param:
        ranged = self.low is not None or self.high is not None
        if (self.values is None) == (not ranged):
            raise ValueError("give either values (a list) or a range (low and high)")
        if ranged:
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError("a range needs low < high")
            if self.log and (self.step is not None or self.low <= 0):
                raise ValueError("a log range needs low > 0 and no step")
        elif self.step is not None or self.log:
            raise ValueError("step and log apply to a range (low, high), not to values")
        for value in self.values or []:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"value {value!r}: values must be strings, numbers, booleans or null")
        return self

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None)

    def active(self, chosen: dict[str, Any]) -> bool:
        """Every condition holds on ``chosen`` (a key of the space that was not drawn is missing from it)."""
        return all(key in chosen and chosen[key] in (want if isinstance(want, list) else [want])
                   for key, want in self.when.items())

    def suggest(self, trial, name: str) -> Any:
        if self.values is not None:
            return trial.suggest_categorical(name, self.values)
        if self.integer:
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        value = trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)
        # on a step grid, 0.7 and not 0.7000000000000001 (the config id hashes the value)
        return round(value, max(0, -Decimal(str(self.step)).as_tuple().exponent)) if self.step else value

    def ends(self) -> list[Any]:
        """Values that must each make a valid configuration (all categories, or both ends of the range)."""
        if self.values is not None:
            return self.values
        return [self.low, self.high]


class SearchSpace:
    def __init__(self, params: dict[str, Param]):
        self.params = params

    @classmethod
    def parse(cls, raw: dict[str, Any], base: RagConfig, source: str = "space") -> SearchSpace:
        """Validate every key against the base configuration: each value (or both ends of a range) must make a valid
        configuration, and a condition may only name a key earlier in the space or one the base config has."""
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"{source}: space must be a non-empty mapping of dotted config keys")
        known = flatten(base.model_dump(mode="json"))
        params: dict[str, Param] = {}
        for key, entry in raw.items():
            where = f"{source}: space.{key}"
            data = {"values": entry} if isinstance(entry, list) else entry
            if not isinstance(data, dict):
                raise ConfigError(f"{where}: expected a list of values or a mapping (values, or low/high)")
            try:
                param = Param.model_validate(data)
            except ValidationError as exc:
                msg = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise ConfigError(f"{where}: {msg}") from None
            for cond in param.when:
                if cond not in params and cond not in known:
                    raise ConfigError(f"{where}: condition on {cond!r}, which is neither earlier in the space nor a "
                                      "key of the base configuration")
            for value in param.ends():
                try:
                    base.with_overrides({key: value})
                except ConfigError as exc:
                    raise ConfigError(f"{where}: value {value!r} is not valid: {str(exc).split(': ', 1)[-1]}") from None
            params[key] = param
        return cls(params)

    def suggest(self, trial, base: RagConfig) -> dict[str, Any]:
        """The dotted overrides a trial draws: each active key in order. A condition on a key of the space reads
        its draw (not drawn: the condition fails); on any other key, the base configuration's value."""
        chosen = {k: v for k, v in flatten(base.model_dump(mode="json")).items() if k not in self.params}
        drawn: dict[str, Any] = {}
        for key, param in self.params.items():
            if param.active(chosen):
                drawn[key] = chosen[key] = param.suggest(trial, key)
        return drawn


class TuneSettings(BaseModel):
    """How ``ragtune tune`` searches (the spec's ``tune:`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler: TPE (Bayesian), or random search")
    seed: int = Field(0, description="the sampler's seed: the same spec and seed draw the same trials")
    startup_trials: int = Field(8, ge=1, description="random trials before TPE models the space, and before pruning")
    pruner: Literal["median", "none"] = Field(
        "median", description="stop a trial whose score on a share of the dev queries is below the median of the "
        "earlier trials' at that share")
    rungs: list[float] = Field([0.25, 0.5, 1.0], min_length=1, description="shares of the dev queries a trial is "
                               "scored on, in turn (pruning is decided at each but the last); ends with 1.0")

    @field_validator("rungs")
    @classmethod
    def _rungs(cls, rungs):
        if any(not 0 < r <= 1 for r in rungs) or rungs != sorted(set(rungs)) or rungs[-1] != 1.0:
            raise ValueError("rungs must be increasing shares in (0, 1] ending with 1.0, e.g. [0.25, 0.5, 1.0]")
        return rungs
