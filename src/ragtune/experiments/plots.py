"""Plots (matplotlib, saved as PNG): per configuration, and for a comparison of configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ragtune.experiments.compare import Comparison
from ragtune.stats import pareto_front


def _figure(width: float, height: float, ncols: int = 1):
    """A figure outside pyplot: no global backend state is touched (a notebook's inline backend keeps working)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, ncols)


def plot_eval(result, out: Path) -> dict[str, Path]:
    """Per-query distribution of the first metric, and per-query latency. Returns {name: PNG path}."""
    out.mkdir(parents=True, exist_ok=True)
    metric = result.config.evaluation.metrics[0]
    fig, axes = _figure(9, 3, ncols=2)
    result.per_query[metric].plot.hist(ax=axes[0], bins=20, color="tab:blue")
    axes[0].set_xlabel(metric)
    axes[0].set_title(f"{metric} per query")
    result.per_query["latency_ms"].plot.hist(ax=axes[1], bins=20, color="tab:orange")
    axes[1].set_xlabel("latency (ms)")
    axes[1].set_title("latency per query")
    return {"per_query_plot": _save(fig, out / "per_query.png")}

def plot_gate(checks: list[dict], path: Path) -> Path:
    """Each gated metric as a bar, its floor as a black tick; a failing metric in red."""
    fig, ax = _figure(6, 0.5 * len(checks) + 1.2)
    names = [c["metric"] for c in checks]
    values = [c["value"] or 0.0 for c in checks]
    ax.barh(names, values, color=["tab:green" if c["passed"] else "tab:red" for c in checks])
    ax.scatter([c["floor"] for c in checks], names, marker="|", s=400, color="black", label="floor", zorder=3)
    ax.set_xlim(0, max([1.0, *values, *(c["floor"] for c in checks)]) * 1.05)
    ax.invert_yaxis()
    ax.legend(loc="lower left", bbox_to_anchor=(1.0, 0.0), frameon=False)  # beside the bars, never over one
    ax.set_title("evaluation gate: metric against its promoted floor")
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


# -- plots ------------------------------------------------------------------------------------------------------


def plot_comparison(comp: Comparison, summary: pd.DataFrame, results: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Metric against chunk size (when chunk size varies), per-query scores against the baseline, and the
    quality/latency Pareto front. Returns {name: PNG path}."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    table = comp.table
    done = summary[summary["status"] == "done"].set_index("config_id")

    size_col = "param.chunking.size"
    if size_col in done.columns and done[size_col].nunique() > 1:
        fig, ax = _figure(6, 4)
        frame = table.join(done[[size_col, "param.chunking.strategy"]])
        for strategy, grp in frame.groupby("param.chunking.strategy"):
            best = grp.loc[grp.groupby(size_col)["mean"].idxmax()].sort_values(size_col)  # best config per size
            ax.errorbar(best[size_col], best["mean"], yerr=[best["mean"] - best["ci_low"], best["ci_high"] - best["mean"]],
                        marker="o", capsize=3, label=str(strategy))
        ax.set_xlabel("chunk size (tokens)")
        ax.set_ylabel(f"{comp.metric} (best config per size, 95% CI)")
        ax.legend(title="chunking", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # outside the data
        ax.set_title(f"{comp.metric} against chunk size")
        paths["metric_vs_chunk_size"] = _save(fig, out / "metric_vs_chunk_size.png")

    names = {cid: _label(row["name"]) for cid, row in table.iterrows()}
    challenger = comp.winner or next((c for c in table.index if c != comp.baseline), None)
    if challenger is not None:
        scores = results.pivot_table(index="query_id", columns="config_id", values=comp.metric, aggfunc="first")
        pairs = scores[[comp.baseline, challenger]].dropna().round(4).value_counts()  # identical points, counted
        fig, ax = _figure(4.8, 4.8)
        xs, ys = pairs.index.get_level_values(0), pairs.index.get_level_values(1)
        ax.scatter(xs, ys, s=18 * np.sqrt(pairs.to_numpy()), alpha=0.6)
        for (x, y), n in pairs.items():
            if n > 1:
                ax.annotate(f"{n}", (x, y), fontsize=7, xytext=(4, -8), textcoords="offset points")
        ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
        better, worse = int((scores[challenger] > scores[comp.baseline]).sum()), int(
            (scores[challenger] < scores[comp.baseline]).sum())
        ax.set_xlabel(f"baseline: {names[comp.baseline]} ({comp.baseline})")
        ax.set_ylabel(f"{'winner' if comp.winner else 'best other'}: {names[challenger]} ({challenger})")
        ax.set_title(f"per-query {comp.metric}: {better} better, {worse} worse, {len(scores) - better - worse} tied\n"
                     "(a number: queries at that point)", fontsize=9)
        paths["per_query_vs_baseline"] = _save(fig, out / "per_query_vs_baseline.png")

    if table["latency_p95_ms"].notna().any():
        fig, ax = _figure(7, 4.5)
        front = pareto_front(table["mean"], table["latency_p95_ms"])
        base = table.index == comp.baseline
        ax.scatter(table.loc[~front & ~base, "latency_p95_ms"], table.loc[~front & ~base, "mean"], color="tab:blue",
                   s=24, label="other configurations")
        ax.scatter(table.loc[front, "latency_p95_ms"], table.loc[front, "mean"], color="tab:red", s=30,
                   label="Pareto front (nothing is both better and faster)")
        ax.scatter(table.loc[base, "latency_p95_ms"], table.loc[base, "mean"], marker="*", s=160,
                   facecolor="none", edgecolor="black", label="baseline", zorder=3)
        pts = table[front].sort_values("latency_p95_ms")
        ax.plot(pts["latency_p95_ms"], pts["mean"], color="tab:red", linewidth=1)
        for cid, row in table.iterrows():
            ax.annotate(names[cid], (row["latency_p95_ms"], row["mean"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        lat = table["latency_p95_ms"].dropna()
        if lat.max() > 10 * lat.min() > 0:  # a log axis only for a range that needs one, with plain numbers
            from matplotlib.ticker import ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.set_xlabel("latency p95 (ms, log scale)")
        else:
            ax.set_xlabel("latency p95 (ms)")
        ax.set_ylabel(comp.metric)
        ax.margins(x=0.15, y=0.1)  # room for the labels
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        ax.set_title(f"{comp.metric} against latency, by configuration")
        paths["pareto"] = _save(fig, out / "pareto.png")
    return paths


def _label(name) -> str:
    """A configuration's name as a person reads it: without the sweep's prefix ("chunking/size=128" -> "size=128")."""
    return str(name).split("/", 1)[-1] if name == name and name is not None else "?"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
