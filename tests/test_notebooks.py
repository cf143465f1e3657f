"""The notebooks run headless through papermill, as `ragtune sweep` and CI run them."""

import json
from pathlib import Path

import jupytext
import pytest

from ragtune.experiments.sweep import _execute_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def outputs(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [o for cell in nb["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]


def mime_types(path: Path) -> set[str]:
    return {m for o in outputs(path) for m in o.get("data", {})}


@pytest.mark.parametrize("script", sorted(NOTEBOOKS.glob("*.py")), ids=lambda p: p.stem)
def test_every_notebook_has_a_parameters_cell_and_no_logic_of_its_own(script):
    nb = jupytext.read(script)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "def " not in code and "class " not in code  # logic lives in src/ragtune
    assert nb.cells[0].cell_type == "markdown"  # each notebook explains itself first


def test_quickstart_runs_headless(tmp_path, workspace):
    out = tmp_path / "quickstart.ipynb"
    _execute_notebook(NOTEBOOKS / "quickstart.py", out, {"queries": 8, "home": str(workspace.home)})
    assert {"image/png", "text/html"} <= mime_types(out)  # the plot and the result table
    html = " ".join("".join(o["data"]["text/html"]) for o in outputs(out) if "text/html" in o.get("data", {}))
    assert "ndcg@10" in html and "hybrid + rerank" in html
    text = " ".join("".join(o.get("text", "")) for o in outputs(out))
    assert "winner" in text or "keep the baseline" in text  # the verdict against BM25


STUDIES = {
    "chunking_study": {"grid": {"chunking.size": [64, 128], "chunking.strategy": ["sentence"]}},
    "embedding_study": {},
    "generation_study": {"grid": {"generation.context_k": [1, 3], "generation.max_sentences": [2]}},
    "fusion_study": {"configs": [{"retrieval.mode": "vector"}, {"retrieval.mode": "hybrid", "retrieval.rrf_k": 10},
                                 {"retrieval.mode": "hybrid", "retrieval.fusion": "linear", "retrieval.weight": 0.5}]},
    "rerank_study": {"grid": {"rerank.model": [None, "cross-encoder"], "rerank.depth": [5]}},
}


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_study_notebooks_run_a_small_sweep_and_compare(name, tmp_path, workspace):
    out = tmp_path / f"{name}.ipynb"
    params = {"spec_path": str(NOTEBOOKS.parent / "experiments" / f"{name.split('_')[0]}.yaml"), "queries": 6,
              "out": str(tmp_path / "sweep"), "home": str(workspace.home), "tracking_mode": "disabled",
              **STUDIES[name]}
    _execute_notebook(NOTEBOOKS / f"{name}.py", out, params)
    text = " ".join("".join(o.get("text", "")) for o in outputs(out))
    assert "failed': 0" in text
    assert "winner" in text or "keep the baseline" in text
    assert (tmp_path / "sweep" / "compare" / "leaderboard.csv").is_file()
    assert "image/png" in mime_types(out) or name == "embedding_study"


def test_compare_notebook_reads_a_sweep_folder(tmp_path, workspace):
    from ragtune.experiments.sweep import SweepSpec, run_sweep

    spec = SweepSpec.model_validate({"name": "nb", "dataset": "sample", "queries": 6,
                                     "grid": {"retrieval.mode": ["fts", "vector"]}, "baseline": {"retrieval.mode": "fts"},
                                     "tracking": {"mode": "disabled"}})
    run_sweep(spec, tmp_path / "sweep", runner="inprocess", home=workspace.home, progress=False)
    out = tmp_path / "compare.ipynb"
    _execute_notebook(NOTEBOOKS / "compare.py", out, {"sweep_dirs": [str(tmp_path / "sweep")]})
    assert "image/png" in mime_types(out)
    assert (tmp_path / "sweep" / "compare" / "pareto.png").is_file()
