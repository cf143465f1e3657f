"""The production build's report: Markdown and HTML (the same facts), a plot of the gate, and a W&B run."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from ragtune.workspace import atomic_write_text


def _sections(ingested: dict, metrics: dict, gated: dict, published: dict) -> list[tuple[str, list[list[str]]]]:
    fresh = [["documents", ingested["documents"]], ["added", ingested["added"]], ["changed", ingested["changed"]],
             ["removed", ingested["removed"]], ["unchanged", ingested["unchanged"]],
             ["chunks embedded", ingested["chunks_embedded"]],
             ["oldest document ingested at", ingested["oldest_document_ingested_at"]],
             ["ingest seconds", ingested["seconds"]]]
    gate = [[c["metric"], _num(c["value"]), _num(c["floor"]), "pass" if c["passed"] else "FAIL"] for c in gated["checks"]]
    m, gated_metrics = metrics["metrics"], {c["metric"] for c in gated["checks"]}
    quality = [[k, _num(v)] for k, v in sorted(m.items()) if not k.endswith("_ms") and k not in gated_metrics]
    latency = [[k, f"{v:.1f}"] for k, v in sorted(m.items()) if k.endswith("_ms")]
    pub = [["table", published["table"]], ["table version", published["version"]],
           ["published at", published["published_at"]],
           ["release", f"v{published.get('release')}"], ["config id", published.get("config_id")]]
    return [("Publication", [["", ""], *pub]), ("Freshness", [["", ""], *fresh]),
            ("Gate", [["metric", "value", "floor", ""], *gate]),
            ("Other scores (not gated)", [["metric", "mean"], *quality]), ("Latency", [["", "ms"], *latency])]


def _num(value) -> str:
    return "missing" if value is None else f"{value:.4f}"


def _markdown(title: str, sections, plot: str) -> str:
    lines = [f"# {title}", ""]
    for name, (head, *rows) in sections:
        lines += [f"## {name}", "", "| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows] + [""]
    return "\n".join(lines + [f"![gate]({plot})", ""])


def _html(title: str, sections, plot: str) -> str:
    esc = lambda v: html.escape(str(v))  # noqa: E731
    parts = [f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style>", f"<h1>{esc(title)}</h1>"]
    for name, (head, *rows) in sections:
        parts.append(f"<h2>{esc(name)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append(f"<img src='{esc(plot)}' alt='gate'>")
    return "\n".join(parts) + "\n"


def write_report(out: dict, ingested: dict, evaluation: Path, gated: dict, published: dict,
                 tracking: str | None = None) -> dict:
    """``out`` maps md, html and plot to their paths. Returns the W&B run id (None when tracking is disabled)."""
    from ragtune.experiments.plots import plot_gate
    from ragtune.experiments.tracking import log_pipeline

    paths = {k: Path(str(v)) for k, v in out.items()}
    metrics = json.loads((evaluation / "metrics.json").read_text(encoding="utf-8"))
    title = (f"ragtune production build: release v{published.get('release')}, table {published['table']} at version "
             f"{published['version']}")
    sections = _sections(ingested, metrics, gated, published)
    plot = plot_gate(gated["checks"], paths["plot"])
    rel = Path(plot.name)  # the report and its plot sit in the same folder
    atomic_write_text(paths["md"], _markdown(title, sections, rel.as_posix()))
    atomic_write_text(paths["html"], _html(title, sections, rel.as_posix()))
    summary = {**{f"freshness/{k}": v for k, v in ingested.items() if isinstance(v, (int, float))},
               **metrics["metrics"], "gate_passed": gated["passed"], "published_version": published["version"]}
    run = log_pipeline(paths["md"].parent, summary, pd.read_parquet(evaluation / "per_query.parquet"),
                       {"gate": plot}, {**published}, tracking)
    print(f"report: {paths['html']} (and {paths['md'].name} beside it)", flush=True)
    return {"wandb_run": run, **{k: str(v) for k, v in paths.items()}}
