"""JupyterLab end to end in a real headless browser (Debian's chromium driven by Playwright): open the quickstart
notebook, run all cells, and find its result table and plot in the page."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from console import console_warnings
from ragtune.lab import kernel_env, lab_command, notebooks_folder

REPO = Path(__file__).resolve().parents[1]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab_server(tmp_path, workspace):
    folder = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", folder, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    # the quickstart on its first 20 questions (as test_notebooks runs it on 8): what is checked here is that
    # JupyterLab runs it and shows its table and chart; all 90 questions re-rank 1,800 pairs, two minutes of model
    quickstart = folder / "quickstart.py"
    text = quickstart.read_text()
    assert "\nqueries = None" in text, "the quickstart's parameters cell changed: update this test"
    quickstart.write_text(text.replace("\nqueries = None", "\nqueries = 20", 1))
    port = free_port()
    program, argv = lab_command(port, no_browser=True, folder=folder, ip="127.0.0.1", token="",
                                extra=["--ServerApp.password="])
    env = {**kernel_env(), "RAGTUNE_HOME": str(workspace.home)}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/contents/", timeout=2) as resp:
                    assert resp.status == 200  # the file browser's API works (Ploomber's extension is off)
                    listed = sorted(item["name"] for item in json.load(resp)["content"])
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("JupyterLab did not start")
                time.sleep(0.5)
        # each notebook listed once, as the notebook it opens as
        notebooks = [n for n in listed if n.endswith((".py", ".ipynb"))]
        assert notebooks == sorted(p.with_suffix(".ipynb").name for p in folder.glob("*.py")), listed
        yield base, folder
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
    printed = (tmp_path / "lab.log").read_text()
    loaded = re.findall(r"Extension package (\w+)|(\w+) \| extension was successfully loaded", printed)
    assert not {n for pair in loaded for n in pair} & {"ploomber", "ploomber_extension", "nbclassic"}, printed
    assert not console_warnings(printed), printed


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; `make test` does)")
def test_quickstart_runs_in_jupyterlab(lab_server, tmp_path):
    from playwright.sync_api import sync_playwright

    base, folder = lab_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/quickstart.ipynb")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # Run All is only honoured once the kernel is connected: wait for the status bar to say so
            page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=120_000)
            page.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=10_000)  # the Run menu
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=10_000)
            try:
                # JupyterLab renders only the cells in view: the outputs are attached as the run scrolls down
                page.wait_for_selector(".jp-OutputArea-output img", state="attached", timeout=300_000)  # the chart
                page.wait_for_selector(".jp-OutputArea-output table", state="attached", timeout=60_000)  # results
            finally:
                page.screenshot(path=str(tmp_path / "quickstart.png"))  # kept by pytest for a look on failure
            tables = page.inner_text(".jp-Notebook")
            assert "ndcg@10" in tables and "hybrid + rerank" in tables
            page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=120_000)
            assert not page.query_selector(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] .ansi-red-fg")
        finally:
            browser.close()
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000


def test_the_lab_finds_the_project_from_any_folder_inside_it(tmp_path):
    from ragtune.errors import RagtuneError

    assert notebooks_folder(REPO / "src" / "ragtune") == REPO / "notebooks"
    with pytest.raises(RagtuneError, match="ragtune lab needs a ragtune project: no pipeline.yaml in"):
        notebooks_folder(tmp_path)
    (tmp_path / "pipeline.yaml").write_text("tasks: []\n")
    with pytest.raises(RagtuneError, match="has no notebooks folder"):
        notebooks_folder(tmp_path)


def test_lab_kernels_share_the_project_workspace_unless_one_is_named(tmp_path):
    env = kernel_env({"PATH": "/usr/bin"}, home=tmp_path / ".ragtune")
    assert env["RAGTUNE_HOME"] == str(tmp_path / ".ragtune") and env["PATH"].endswith(os.pathsep + "/usr/bin")
    assert kernel_env({"PATH": "", "RAGTUNE_HOME": "/elsewhere"}, home=tmp_path)["RAGTUNE_HOME"] == "/elsewhere"
