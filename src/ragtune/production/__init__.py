"""The production configuration: the frozen winner of a sweep, written by ``ragtune promote``.

``release/config.yaml`` is the configuration and ``release/provenance.json`` says where it came from (sweep,
config id, W&B run, dataset fingerprint, metrics with confidence intervals, floors, date, version). The folder is
replaced as a whole by a promotion, never edited by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ragtune.config import RagConfig
from ragtune.errors import ConfigError

RELEASE_DIR = Path(__file__).parent / "release"


@dataclass(frozen=True)
class Release:
    config: RagConfig
    provenance: dict

    @property
    def version(self) -> int:
        return int(self.provenance["version"])

    @property
    def floors(self) -> dict[str, float]:
        return dict(self.provenance["floors"])

    def checks(self, metrics: dict[str, float]) -> list[dict]:
        """Each floor against ``metrics``: ``{"metric", "value", "floor", "passed"}``, by metric name. A metric that
        is missing fails its check. The gate of the pipeline and the regression test both judge by this."""
        return [{"metric": m, "value": metrics.get(m), "floor": floor,
                 "passed": metrics.get(m) is not None and metrics[m] >= floor - 1e-9}
                for m, floor in sorted(self.floors.items())]


def load_release(folder: Path = RELEASE_DIR) -> Release | None:
    """The release in ``folder``; None when nothing was promoted yet; a clear error when it is damaged."""
    folder = Path(folder)
    config_path, provenance_path = folder / "config.yaml", folder / "provenance.json"
    if not folder.exists():
        return None
    if not config_path.is_file() or not provenance_path.is_file():
        missing = [p.name for p in (config_path, provenance_path) if not p.is_file()]
        raise ConfigError(f"{folder}: production release is incomplete (missing {', '.join(missing)}); "
                          "run `ragtune promote SWEEP_FOLDER` again")
    config = RagConfig.from_yaml(config_path)
    try:
        provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{provenance_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    for key in ("version", "config_id", "floors", "dataset"):
        if key not in provenance:
            raise ConfigError(f"{provenance_path}: missing field {key!r}")
    if provenance["config_id"] != config.id:
        raise ConfigError(f"{config_path}: config id {config.id} does not match the promoted "
                          f"{provenance['config_id']} in provenance.json: the frozen config was edited; "
                          "promote again instead")
    return Release(config, provenance)


def require_release(folder: Path = RELEASE_DIR) -> Release:
    release = load_release(folder)
    if release is None:
        raise ConfigError(f"{folder}: no production configuration yet; run `ragtune promote SWEEP_FOLDER`")
    return release


def evaluate_release(release: Release, workspace=None):
    """Evaluate the release on the dataset and queries it was promoted on (for the regression test and the gate)."""
    from ragtune.data import load_dataset
    from ragtune.evaluation.run import evaluate

    ds = release.provenance["dataset"]
    data = load_dataset(ds["path"], ds.get("split", "test"), ds.get("queries"))
    if ds.get("query_ids"):  # promoted on a sweep's held-out test queries
        data = data.subset(ds["query_ids"])
    return evaluate(release.config, data, workspace)
