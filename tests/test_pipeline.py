"""The production pipeline (pipeline.yaml) through `ploomber build`, as a scheduler would run it: full build,
unchanged rebuild, incremental changes, a failing gate, builds killed midway, the Airflow export, damaged releases."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import pytest

from console import console_warnings
from ragtune.engine import Engine
from ragtune.workspace import Workspace
from ragtune.production import load_release
from ragtune.production.promote import promote
from ragtune.production.publish import open_published, published
from ragtune.experiments.sweep import SweepSpec, run_sweep

REPO = Path(__file__).resolve().parents[1]
PLOOMBER = Path(sys.executable).with_name("ploomber")
TASKS = ["ingest", "index", "evaluate", "gate", "publish", "report"]


@pytest.fixture(scope="module")
def release(tmp_path_factory, workspace) -> Path:
    """A real release: a one-config hybrid sweep on the sample, promoted (floors = its lower confidence bounds)."""
    root = tmp_path_factory.mktemp("release")
    spec = SweepSpec.model_validate({
        "name": "hybrid", "dataset": "sample", "tracking": {"mode": "disabled"},
        "base": {"chunking": {"size": 128, "overlap": 16}, "retrieval": {"mode": "hybrid"}},
        "grid": {"retrieval.fusion": ["rrf"]}})
    run_sweep(spec, root / "sweep", runner="inprocess", home=workspace.home, progress=False)
    promote(root / "sweep", release_dir=root / "release", regression_test=None, workspace=workspace)
    return root / "release"


class Project:
    """A production deployment in a temporary folder: its documents, workspace, products and release."""

    def __init__(self, root: Path, release: Path, cache: Path):
        self.root, self.docs, self.home, self.out = root, root / "docs", root / "home", root / "out"
        self.release = root / "release"
        shutil.copytree(release, self.release)
        shutil.copytree(REPO / "src" / "ragtune" / "sample" / "docs", self.docs)
        self.home.mkdir()
        with sqlite3.connect(cache) as src, sqlite3.connect(self.home / "embeddings.sqlite") as dst:
            src.backup(dst)  # the session's cache (WAL included): models embed each text once across the tests

    @property
    def env_args(self) -> list[str]:
        values = {"corpus": self.docs, "dataset": "sample", "home": self.home, "out": self.out,
                  "release": self.release, "tracking": "disabled"}
        return [f"--env--{k}={v}" for k, v in values.items()]

    def run(self, *args: str, kill_at: str | None = None, tracking: str = "disabled") -> subprocess.CompletedProcess:
        env = {**os.environ, "PLOOMBER_STATS_ENABLED": "false", "PLOOMBER_VERSION_CHECK_DISABLED": "1"}
        env.pop("RAGTUNE_KILL_AT", None)
        if kill_at:
            env["RAGTUNE_KILL_AT"] = kill_at
        argv = [str(PLOOMBER), *args, *[a for a in self.env_args if not a.startswith("--env--tracking")],
                f"--env--tracking={tracking}"]
        # a session of its own: a kill point takes down the whole build, as a power cut would, and nothing else
        return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
                              start_new_session=True)

    def status(self):
        from typer.testing import CliRunner

        from ragtune.cli import app

        return CliRunner().invoke(app, ["pipeline", "status", "--home", str(self.home), "--out", str(self.out),
                                        "--corpus", str(self.docs)])

    def build(self, **kw) -> subprocess.CompletedProcess:
        return self.run("build", **kw)

    def product(self, name: str) -> dict:
        return json.loads((self.out / name).read_text())

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.home)


def ran(proc: subprocess.CompletedProcess) -> dict[str, bool]:
    """Ploomber's summary table: task -> whether it ran in this build."""
    rows = re.findall(r"^(\w+)\s+(True|False)\s", proc.stdout, re.M)
    return {name: flag == "True" for name, flag in rows}


def served_docs(project: Project) -> set[str]:
    table = open_published(project.workspace)
    return {r["doc_id"] for r in table.search().select(["doc_id"]).limit(10_000).to_list()}


def search_published(project: Project, query: str, release: Path) -> list[str]:
    config = load_release(release).config
    retriever = Engine(config, project.workspace).retriever(open_published(project.workspace))
    return [h.doc_id for h in retriever.search(query, 5).documents(5)]


@pytest.fixture
def project(tmp_path, release, workspace) -> Project:
    return Project(tmp_path, release, workspace.cache.path)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_full_build_then_unchanged_then_incremental(project, release):
    first = ok(project.build(tracking="offline"))
    assert all(ran(first)[t] for t in TASKS), first.stdout
    assert not console_warnings(first.stdout + first.stderr)  # what `ploomber build` prints is the build's, only
    ingest = project.product("ingest.json")
    assert ingest["added"] == len(list((project.docs).rglob("*.*"))) and ingest["changed"] == ingest["removed"] == 0
    pub = published(project.workspace)
    assert pub == project.product("published.json") and pub["version"] == project.product("index.json")["version"]
    assert served_docs(project) == {p.relative_to(project.docs).with_suffix("").as_posix()
                                    for p in project.docs.rglob("*.*")}
    report = (project.out / "report" / "report.md").read_text()
    assert "## Gate" in report and "FAIL" not in report and (project.out / "report" / "gate.png").stat().st_size > 1000
    gated_rows = [line for line in report.splitlines() if line.startswith("| ndcg@10 |")]
    assert len(gated_rows) == 1  # a gated metric is shown once, in the gate
    assert f"report: {project.out / 'report' / 'report.html'}" in first.stdout  # the build says where the report is
    assert "<table>" in (project.out / "report" / "report.html").read_text()
    gate = project.product("gate.json")
    assert gate["passed"] and {c["metric"] for c in gate["checks"]} == set(load_release(release).floors)
    from wandb_records import read_run

    (run_dir,) = (project.out / "report" / "wandb").glob("offline-run-*")
    run = read_run(run_dir)
    assert run["run"].job_type == "pipeline" and run["summary"]["gate_passed"] is True
    assert run["summary"]["ndcg@10"] == pytest.approx(project.product("evaluation/metrics.json")["metrics"]["ndcg@10"])

    status = project.status()
    assert status.exit_code == 0 and "fresh:" in status.stdout and f"v{pub['version']}" in status.stdout

    mtimes = {p: p.stat().st_mtime_ns for p in project.out.rglob("*.json")}
    again = ok(project.build(tracking="offline"))  # the same parameters: nothing to do
    assert ran(again) == {t: False for t in TASKS}, again.stdout
    assert {p: p.stat().st_mtime_ns for p in project.out.rglob("*.json")} == mtimes
    assert published(project.workspace) == pub

    (project.docs / "hr" / "volunteering.md").write_text(
        "# Volunteering\n\nEvery employee may take two paid days a year to volunteer for a charity.\n")
    vacation = project.docs / "hr" / "vacation.md"
    vacation.write_text(vacation.read_text().replace("25 days", "27 days"))
    (project.docs / "finance" / "commuting.md").unlink()
    stale = project.status()
    assert stale.exit_code == 3 and "stale:" in stale.stdout  # the corpus changed since the last ingest
    third = ok(project.build(tracking="offline"))
    assert all(ran(third)[t] for t in TASKS)
    ingest = project.product("ingest.json")
    assert ingest["ids"] == {"added": ["hr/volunteering"], "changed": ["hr/vacation"], "removed": ["finance/commuting"]}
    assert ingest["unchanged"] == len(list(project.docs.rglob("*.*"))) - 2  # all but the added and the changed one
    table = open_published(project.workspace)
    rows = table.search().select(["doc_id"]).limit(10_000).to_list()
    assert ingest["chunks_embedded"] == sum(r["doc_id"] in ("hr/volunteering", "hr/vacation") for r in rows)
    assert published(project.workspace)["version"] > pub["version"]
    assert "finance/commuting" not in served_docs(project) and "hr/volunteering" in served_docs(project)
    assert search_published(project, "two paid days to volunteer for a charity", release)[0] == "hr/volunteering"


def test_failed_gate_or_killed_build_leaves_the_publication_serving(project, release):
    ok(project.build())
    first = published(project.workspace)
    before = served_docs(project)
    (project.docs / "hr" / "volunteering.md").write_text("# Volunteering\n\nEmployees may volunteer.\n")
    (project.docs / "company" / "about.md").unlink()
    expected = before - {"company/about"} | {"hr/volunteering"}

    for point in ("ingest.deleted", "publish.tagged"):
        killed = project.build(kill_at=point)
        assert killed.returncode == -9, (point, killed.returncode, killed.stdout[-2000:], killed.stderr[-2000:])
        assert published(project.workspace) == first and served_docs(project) == before, point

    provenance = project.release / "provenance.json"
    saved = provenance.read_text()
    data = json.loads(saved)
    data["floors"]["ndcg@10"] = 0.9999  # a floor no build reaches
    provenance.write_text(json.dumps(data))
    failed = project.build()
    assert failed.returncode != 0
    assert "evaluation gate failed" in failed.stdout + failed.stderr and "ndcg@10" in failed.stdout + failed.stderr
    assert not ran(failed).get("publish", False)
    assert published(project.workspace) == first and served_docs(project) == before
    assert project.product("gate.json")["passed"] is False

    provenance.write_text(saved)
    ok(project.build())  # the next build completes and publishes the change
    assert published(project.workspace)["version"] > first["version"] and served_docs(project) == expected
    tags = open_published(project.workspace).tags.list()
    assert [t for t in tags if t.startswith("published-")] == [published(project.workspace)["tag"]]


def test_missing_or_damaged_release_is_a_clear_error(project):
    shutil.rmtree(project.release)
    proc = project.build()
    assert proc.returncode != 0 and "no production configuration yet" in proc.stdout + proc.stderr
    project.release.mkdir()
    (project.release / "config.yaml").write_text("retrieval: {mode: sideways}\n")
    (project.release / "provenance.json").write_text("{}")
    proc = project.build()
    assert proc.returncode != 0 and "retrieval.mode" in proc.stdout + proc.stderr
    assert published(project.workspace) is None


def test_airflow_export_runs_the_same_tasks_in_the_same_order(project, release, tmp_path):
    from ploomber.spec import DAGSpec

    from ragtune.production.schedule import airflow_dag

    source = airflow_dag(REPO, "0 2 * * *")
    ops, edges = _exec_with_fake_airflow(source)
    env = {a.split("=", 1)[0][len("--env--"):]: a.split("=", 1)[1] for a in project.env_args}
    dag = DAGSpec(REPO / "pipeline.yaml", env=env).to_dag()
    assert set(ops) == set(dag) == set(TASKS)
    assert edges == {(u, name) for name in dag for u in dag[name].upstream}
    # run the operators' commands in an order the DAG allows, as Airflow would: the pipeline publishes
    done = []
    while len(done) < len(ops):
        ready = next(n for n in ops if n not in done and all(u in done for u, d in edges if d == n))
        cmd = ops[ready]["bash_command"] + " " + " ".join(f"'{a}'" for a in project.env_args)
        proc = subprocess.run(["bash", "-c", cmd], env={**os.environ, **ops[ready]["env"]}, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, (ready, proc.stdout[-2000:], proc.stderr[-2000:])
        done.append(ready)
    assert published(project.workspace)["version"] == project.product("index.json")["version"]
    assert search_published(project, "how many vacation days", release)[0] == "hr/vacation"


#: Airflow as a user installs it, in a virtual environment of its own (its pins must not meet ragtune's)
AIRFLOW = "apache-airflow==3.3.2"


@pytest.fixture(scope="session")
def airflow(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("airflow") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", AIRFLOW],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv / "bin" / "airflow"


@pytest.mark.slow
def test_the_exported_dag_runs_the_pipeline_in_a_real_airflow(project, release, airflow, tmp_path):
    """`ragtune pipeline export-airflow` into a real Airflow's dags folder (SQLite metadata): `airflow dags test` runs
    the six tasks in order, every one succeeds, and the pipeline publishes what a `ploomber build` publishes."""
    from ragtune.production.schedule import airflow_dag

    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    values = dict(a[len("--env--"):].split("=", 1) for a in project.env_args)
    (home / "dags" / "ragtune.py").write_text(airflow_dag(REPO, None, env=values))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": f"{airflow.parent}:{env.get('PATH', '')}"})

    def cli(*args: str) -> str:
        proc = subprocess.run([str(airflow), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=1200)
        assert proc.returncode == 0, (args, proc.stdout[-4000:], proc.stderr[-4000:])
        return proc.stdout

    def listing(*args: str) -> list[dict]:
        return json.loads(cli(*args, "-o", "json").strip().splitlines()[-1])  # after Airflow's warnings

    cli("db", "migrate")
    cli("dags", "reserialize")  # Airflow parses the dags folder: the file imports there
    assert [d["dag_id"] for d in listing("dags", "list")] == ["ragtune_production"]
    cli("dags", "test", "ragtune_production")
    (run,) = listing("dags", "list-runs", "ragtune_production")
    assert run["state"] == "success"
    states = {t["task_id"]: t for t in listing("tasks", "states-for-dag-run", "ragtune_production", run["run_id"])}
    assert {name: t["state"] for name, t in states.items()} == {t: "success" for t in TASKS}
    from ploomber.spec import DAGSpec

    dag = DAGSpec(REPO / "pipeline.yaml", env=values).to_dag()
    for name in dag:  # each task started after its upstream tasks ended
        assert all(states[u]["end_date"] <= states[name]["start_date"] for u in dag[name].upstream), name
    assert published(project.workspace)["version"] == project.product("index.json")["version"]
    assert project.product("gate.json")["passed"]
    assert search_published(project, "how many vacation days", release)[0] == "hr/vacation"


def _exec_with_fake_airflow(source: str):
    """Execute a generated DAG file against a minimal stand-in for Airflow that records operators and edges."""
    ops, edges = {}, set()

    class Op:
        def __init__(self, task_id, bash_command, env, append_env):
            self.task_id = task_id
            ops[task_id] = {"bash_command": bash_command, "env": env, "append_env": append_env}

        def __rshift__(self, other):
            edges.add((self.task_id, other.task_id))
            return other

    class DAG:
        def __init__(self, dag_id, schedule, **kw):
            self.dag_id, self.schedule = dag_id, schedule

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    airflow = types.ModuleType("airflow")
    airflow.DAG = DAG
    operators, bash = types.ModuleType("airflow.operators"), types.ModuleType("airflow.operators.bash")
    bash.BashOperator = Op
    saved = {k: sys.modules.get(k) for k in ("airflow", "airflow.operators", "airflow.operators.bash")}
    sys.modules.update({"airflow": airflow, "airflow.operators": operators, "airflow.operators.bash": bash})
    try:
        namespace: dict = {}
        exec(compile(source, "dag.py", "exec"), namespace)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    assert namespace["dag"].schedule == "0 2 * * *" and namespace["dag"].dag_id == "ragtune_production"
    return ops, edges


def test_a_damaged_or_dangling_pointer_is_republished_without_force(project, release):
    ok(project.build())
    pointer = project.home / "published.json"
    good = json.loads(pointer.read_text())
    from ragtune.production.pipeline import pointer_state

    assert pointer_state(str(project.home), str(project.out)) == "ok"
    pointer.rename(pointer.with_suffix(".bak"))  # deleted: the state changes, so the next build would republish
    assert pointer_state(str(project.home), str(project.out)).startswith("repair:")
    pointer.with_suffix(".bak").rename(pointer)
    for broken in ("{half a rec", json.dumps({**good, "version": 9999})):
        pointer.write_text(broken)
        repaired = ok(project.build())
        assert ran(repaired)["publish"] and not ran(repaired)["ingest"], repaired.stdout
        assert published(project.workspace) == project.product("published.json")
        assert published(project.workspace)["version"] == good["version"]
        assert open_published(project.workspace) is not None
