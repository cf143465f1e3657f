# The two commands of the README: `make run` (the main job on the shipped sample) and `make test`.
# Both create the virtual environment first when it is missing or older than pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A bare `torch` requirement pulls a multi-GB CUDA build; the CPU wheel is enough for the CPU.
# On a GPU runner: make TORCH="torch" (or a CUDA wheel index) to get CUDA.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

export PLOOMBER_STATS_ENABLED := false
export PLOOMBER_VERSION_CHECK_DISABLED := 1
export HF_HUB_OFFLINE := 1

.PHONY: install run test test-slow browser lab clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,pdf,ray]"
	# pip byte-compiles what it installs but not an editable source tree; where PYTHONDONTWRITEBYTECODE is set (as on
	# CI), every process would otherwise compile ragtune's modules again (about 0.3 s each: the CLI, notebook kernels)
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

# The main job: five retrieval setups on the shipped sample, each an executed notebook, then the leaderboard and the
# significant winner (experiments/out/setups/).
run: $(STAMP)
	$(BIN)/ragtune sweep experiments/setups.yaml

# Test files run on TEST_WORKERS processes (pytest-xdist; a file's tests stay together, so its fixtures are built once).
# The slowest 25 are listed at the end, so that every run shows where the suite's time goes.
TEST_WORKERS ?= 2

test: $(STAMP) browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

# The slow tests (marked `slow`, left out of `make test`): the exported DAG in a real Airflow it installs (minutes).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# The JupyterLab test drives Debian's chromium (Playwright's own browser download is not used). Installed here when
# missing and we may (root with apt-get); otherwise that one test is skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && echo "installing Debian's chromium with apt-get (a system package, about a minute) for the JupyterLab browser test" \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium is not installed: the JupyterLab browser test will be skipped"

lab: $(STAMP)
	$(BIN)/ragtune lab

clean:
	rm -rf .ragtune runs
