"""Running the production pipeline on a schedule: a crontab entry, a systemd timer, or an Airflow DAG.

All three run the same thing from the repo root: ``ploomber build`` (cron, systemd), or ``ploomber task NAME`` per
task in pipeline.yaml's order (Airflow, one operator per task, so a failed gate shows as a failed task there).
Builds never overlap: cron and systemd take ``flock`` on ``<home>/pipeline.lock``; the DAG allows one active run.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ragtune.errors import ConfigError

MARKER = "# ragtune-pipeline"
PLOOMBER_ENV = {"PLOOMBER_STATS_ENABLED": "false", "PLOOMBER_VERSION_CHECK_DISABLED": "1"}
_FIELDS = [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)]
_NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec".split(), 4: "sun mon tue wed thu fri sat".split()}
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def validate_cron(expr: str) -> str:
    """The expression, normalised; a ConfigError naming the field that is wrong and what it accepts."""
    expr = " ".join(expr.split())
    if expr in _MACROS:
        return expr
    parts = expr.split(" ")
    if len(parts) != 5:
        raise ConfigError(f"--cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week) "
                          f"or one of {', '.join(sorted(_MACROS))}; got {len(parts)}")
    for i, (part, (name, low, high)) in enumerate(zip(parts, _FIELDS)):
        for item in part.split(","):
            if not _valid_item(item.lower(), low, high, _NAMES.get(i, [])):
                raise ConfigError(f"--cron {expr!r}: {name} field {part!r} is not valid: expected *, a number "
                                  f"{low}-{high}, a range a-b, a step */n or a-b/n, or a comma list of those")
    return expr


def _valid_item(item: str, low: int, high: int, names: list[str]) -> bool:
    m = re.fullmatch(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?", item)
    if not m or (m.group(2) is not None and int(m.group(2)) < 1):
        return False
    if m.group(1) == "*":
        return True

    def value(token: str) -> int | None:
        if token.isdigit():
            return int(token)
        return names.index(token) + (1 if len(names) == 12 else 0) if token in names else None

    bounds = [value(t) for t in m.group(1).split("-")]
    return all(b is not None and low <= b <= high for b in bounds) and bounds == sorted(bounds)


def build_command(repo: Path, home: str = ".ragtune", log: str = "runs/production/pipeline.log") -> str:
    """The shell command a scheduler runs: one build at a time, output appended to a log."""
    ploomber = Path(sys.executable).with_name("ploomber")
    env = " ".join(f"{k}={v}" for k, v in PLOOMBER_ENV.items())
    return (f"cd {shlex.quote(str(repo))} && mkdir -p {shlex.quote(home)} {shlex.quote(str(Path(log).parent))} && "
            f"{env} flock -n {shlex.quote(home + '/pipeline.lock')} {shlex.quote(str(ploomber))} build "
            f">> {shlex.quote(log)} 2>&1")


def cron_entry(expr: str, repo: Path, home: str = ".ragtune") -> str:
    return f"{validate_cron(expr)} {build_command(repo, home)} {MARKER} {repo}"


def install_cron(entry: str, repo: Path) -> str:
    """Put ``entry`` into the user's crontab, replacing an earlier ragtune entry for the same repo."""
    if shutil.which("crontab") is None:
        raise ConfigError("crontab is not installed here; add this line to your scheduler instead:\n" + entry)
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    lines = current.stdout.splitlines() if current.returncode == 0 else []
    kept = [line for line in lines if not line.endswith(f"{MARKER} {repo}")]
    table = "\n".join([*kept, entry]) + "\n"
    subprocess.run(["crontab", "-"], input=table, text=True, check=True)
    return table


def systemd_units(on_calendar: str, repo: Path, home: str = ".ragtune") -> dict[str, str]:
    """A oneshot service and its timer (``systemctl --user enable --now ragtune-pipeline.timer``)."""
    service = f"""[Unit]
Description=ragtune production pipeline (ingest, index, evaluate, gate, publish, report)

[Service]
Type=oneshot
ExecStart=/bin/sh -c {shlex.quote(build_command(repo, home))}
"""
    timer = f"""[Unit]
Description=Run the ragtune production pipeline on a schedule

[Timer]
OnCalendar={on_calendar}
Persistent=true

[Install]
WantedBy=timers.target
"""
    return {"ragtune-pipeline.service": service, "ragtune-pipeline.timer": timer}


def pipeline_graph(spec: Path = Path("pipeline.yaml")) -> dict[str, list[str]]:
    """Task name -> its upstream task names, in the order pipeline.yaml lists them."""
    import yaml

    try:
        data = yaml.safe_load(Path(spec).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{spec}: no pipeline spec here; run from the repo root") from None
    graph = {}
    for i, task in enumerate(data.get("tasks") or []):
        name = task.get("name") or str(task.get("source", "")).rsplit(".", 1)[-1]
        if not name:
            raise ConfigError(f"{spec}: task {i + 1} has neither name nor source")
        graph[name] = list(task.get("upstream") or [])
    unknown = {u for ups in graph.values() for u in ups} - set(graph)
    if unknown:
        raise ConfigError(f"{spec}: upstream names no task: {', '.join(sorted(unknown))}")
    return graph


def airflow_dag(repo: Path, schedule: str | None, spec: Path = Path("pipeline.yaml"),
                dag_id: str = "ragtune_production", env: dict[str, str] | None = None) -> str:
    """An Airflow DAG (Python source) with one BashOperator per Ploomber task, wired like pipeline.yaml, for Airflow
    3 (``airflow.sdk``, the standard provider's BashOperator) or 2. ``env``: pipeline.yaml placeholders set for every
    task (``--env--KEY=VALUE``; env.yaml gives the rest). Every worker must see the repo folder and its workspace (a
    shared volume), as the tasks hand files to each other."""
    graph = pipeline_graph(repo / spec)
    schedule_src = repr(validate_cron(schedule)) if schedule else "None"
    ploomber = Path(sys.executable).with_name("ploomber")
    edges = [(u, name) for name, ups in graph.items() for u in ups]
    defaults = repo / spec.with_name("env.yaml")
    if env and defaults.is_file():
        import yaml

        known = set(yaml.safe_load(defaults.read_text(encoding="utf-8")) or {})
        unknown = sorted(set(env) - known)
        if unknown:
            raise ConfigError(f"--env {', '.join(unknown)}: not a placeholder of {spec} (known: "
                              f"{', '.join(sorted(known))})")
    args = " ".join(shlex.quote(f"--env--{k}={v}") for k, v in (env or {}).items())
    return f'''"""Airflow DAG for the ragtune production pipeline. Generated by `ragtune pipeline export-airflow` from
{spec}; regenerate it after changing the pipeline rather than editing it. Each task runs `ploomber task NAME`
in {repo}, which skips a task whose inputs are unchanged, exactly as `ploomber build` would."""

from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

REPO = {str(repo)!r}
PLOOMBER = {str(ploomber)!r}
ARGS = {args!r}
ENV = {PLOOMBER_ENV!r}
TASKS = {list(graph)!r}
EDGES = {edges!r}

with DAG(dag_id={dag_id!r}, schedule={schedule_src}, start_date=datetime(2026, 1, 1), catchup=False,
         max_active_runs=1, tags=["ragtune"]) as dag:
    ops = {{name: BashOperator(task_id=name, bash_command=f"cd '{{REPO}}' && '{{PLOOMBER}}' task {{name}} {{ARGS}}".rstrip(),
                               env=ENV, append_env=True)
           for name in TASKS}}
    for upstream, downstream in EDGES:
        ops[upstream] >> ops[downstream]
'''
