# kgllm — the two set-up commands: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test install neo4j-server wordnet lint bench clean

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

# Everything the tests need (Neo4j jars from Maven Central, WordNet from Debian), then the whole suite
# against a real Neo4j.
test: install neo4j-server wordnet
	$(PY) -m pytest -q

# WordNet 3.0 for the second concept graph of the multiple-choice adapter (Debian packages; needs root).
wordnet:
	@test -f /usr/share/wordnet/index.sense || test -n "$$KGLLM_WORDNET" || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null; } || \
	  echo "WordNet is not installed (apt-get install wordnet-base wordnet-sense-index): its tests will skip"

neo4j-server:
	$(MAKE) -C tests/neo4j_server

lint: install
	$(BIN)/ruff check kgllm tests bench
	$(BIN)/mypy kgllm

clean:
	rm -rf .kgllm build dist *.egg-info
