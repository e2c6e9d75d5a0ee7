# kgllm — the two set-up commands: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test install neo4j-server lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e ".[dev,langchain]"
	touch $@

# The main job on the embedded default store: load the bundled packs into a fresh KB, ask questions.
demo: install
	rm -rf .kgllm/demo
	$(BIN)/kgllm --kb .kgllm/demo demo

# Everything the tests need (Neo4j jars from Maven Central), then the whole suite against a real Neo4j.
test: install neo4j-server
	$(PY) -m pytest -q

neo4j-server:
	$(MAKE) -C tests/neo4j_server

lint: install
	$(BIN)/ruff check kgllm tests bench
	$(BIN)/mypy kgllm

clean:
	rm -rf .kgllm build dist *.egg-info
