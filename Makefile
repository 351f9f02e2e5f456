# The two commands of the README. Both create .venv when it is missing and install the
# pinned dependencies (constraints.txt) once; re-running them re-installs only when
# pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin
DEMO := demo

.PHONY: demo test install clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: install
	@echo "== make demo (1/2): synthesise the demo data set into $(DEMO)/data"
	@test -f $(DEMO)/data/demo_info.json && echo "$(DEMO)/data exists; keeping it" || $(BIN)/ray-tagger demo-data $(DEMO)/data
	@echo "== make demo (2/2): prepare Parquet shards into $(DEMO)/shards (a Ray Data job on a local Ray)"
	$(BIN)/ray-tagger prepare $(DEMO)/data $(DEMO)/shards
	@echo "== make demo done: demo data in $(DEMO)/data, test labels in $(DEMO)/data-test-labels.csv,"
	@echo "   shards, statistics and manifest in $(DEMO)/shards."
	@echo "   Training (relabelling ensemble, final ensembles, predictions) is not built yet;"
	@echo "   until 'ray-tagger run' exists, make demo stops after data preparation."

test: install
	$(BIN)/python -m pytest

clean-demo:
	rm -rf $(DEMO)
