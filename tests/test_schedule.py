"""Scheduling the production pipeline: crontab entries, systemd units, the CLI around them."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.errors import ConfigError
from ragtune.production.schedule import cron_entry, install_cron, pipeline_graph, systemd_units, validate_cron

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("expr", ["0 2 * * *", "*/15 * * * *", "30 1 * * mon-fri", "0 0 1,15 jan-jun 0",
                                  "0 3 * * 7", "5-10/2 0-23/6 * * *", "@daily", "  0   2 * *  * "])
def test_valid_cron_expressions(expr):
    assert validate_cron(expr) == " ".join(expr.split())


@pytest.mark.parametrize("expr, field", [("0 25 * * *", "hour"), ("60 * * * *", "minute"), ("* * 0 * *", "day of month"),
                                         ("* * * 13 *", "month"), ("* * * * 8", "day of week"), ("*/0 * * * *", "minute"),
                                         ("10-5 * * * *", "minute"), ("* * * foo *", "month")])
def test_invalid_cron_names_the_field(expr, field):
    with pytest.raises(ConfigError, match=f"{field} field"):
        validate_cron(expr)


def test_wrong_number_of_fields():
    with pytest.raises(ConfigError, match="expected 5 fields .* got 4"):
        validate_cron("0 2 * *")


def test_cron_entry_runs_one_locked_build_from_the_repo(tmp_path):
    entry = cron_entry("0 2 * * *", tmp_path)
    schedule, command = entry[:9], entry[10:]
    assert schedule == "0 2 * * *" and command.startswith(f"cd {tmp_path} && ")
    assert "flock -n .ragtune/pipeline.lock" in command and "ploomber build" in command
    assert entry.endswith(f"# ragtune-pipeline {tmp_path}")
    # the command itself is valid shell: run it with a stand-in for ploomber that records it was called
    shell = command.split(" # ragtune-pipeline")[0].replace(str(Path(sys.executable).with_name("ploomber")), "echo ran")
    subprocess.run(["bash", "-c", shell], check=True)
    assert (tmp_path / "runs" / "production" / "pipeline.log").read_text().strip() == "ran build"


def test_install_cron_replaces_the_entry_for_the_same_repo(tmp_path, monkeypatch):
    crontab = tmp_path / "crontab"
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    # a stand-in for crontab(1): -l prints the table (exit 1 when there is none), - replaces it from stdin
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-l" ]; then cat {crontab} 2>/dev/null || exit 1; else cat > {crontab}; fi\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    crontab.write_text("MAILTO=ops\n15 * * * * backup.sh\n")
    install_cron(cron_entry("0 2 * * *", tmp_path / "repo"), tmp_path / "repo")
    install_cron(cron_entry("0 4 * * *", tmp_path / "repo"), tmp_path / "repo")
    install_cron(cron_entry("0 5 * * *", tmp_path / "other"), tmp_path / "other")
    lines = crontab.read_text().splitlines()
    assert lines[:2] == ["MAILTO=ops", "15 * * * * backup.sh"]
    assert [line[:9] for line in lines[2:]] == ["0 4 * * *", "0 5 * * *"]


def test_install_cron_without_crontab_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="crontab is not installed here; add this line"):
        install_cron(cron_entry("0 2 * * *", tmp_path), tmp_path)


def test_systemd_units(tmp_path):
    units = systemd_units("daily", tmp_path)
    assert "OnCalendar=daily" in units["ragtune-pipeline.timer"] and "Persistent=true" in units["ragtune-pipeline.timer"]
    assert "Type=oneshot" in units["ragtune-pipeline.service"] and "ploomber build" in units["ragtune-pipeline.service"]


def test_pipeline_graph_matches_the_spec_and_rejects_unknown_upstream(tmp_path):
    graph = pipeline_graph(REPO_ROOT / "pipeline.yaml")
    assert list(graph) == ["ingest", "index", "evaluate", "gate", "publish", "report"]
    assert graph["publish"] == ["ingest", "index", "gate"]
    (tmp_path / "pipeline.yaml").write_text("tasks:\n  - source: a.b.first\n    upstream: [nothing]\n")
    with pytest.raises(ConfigError, match="upstream names no task: nothing"):
        pipeline_graph(tmp_path / "pipeline.yaml")


def test_cli_schedule_and_status(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["pipeline", "schedule", "--cron", "0 2 * * *", "--repo", str(tmp_path)])
    assert res.exit_code == 0 and res.stdout.startswith("0 2 * * * cd ")
    res = runner.invoke(app, ["pipeline", "schedule", "--cron", "0 2 * *"])
    assert res.exit_code == 2 and "expected 5 fields" in res.output
    res = runner.invoke(app, ["pipeline", "schedule", "--systemd", str(tmp_path / "units")])
    assert res.exit_code == 0 and (tmp_path / "units" / "ragtune-pipeline.timer").is_file()
    res = runner.invoke(app, ["pipeline", "export-airflow", "-o", str(tmp_path / "dag.py"), "--repo", str(REPO_ROOT)])
    assert res.exit_code == 0 and compile((tmp_path / "dag.py").read_text(), "dag.py", "exec")
    res = runner.invoke(app, ["pipeline", "status", "--home", str(tmp_path / "home")])
    assert res.exit_code == 1 and "nothing published yet" in res.output
