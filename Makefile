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
	@echo "== make demo: the whole system on the embedded demo data set, local Ray, preset 'demo'"
	@echo "   (synthesise data → prepare shards → relabelling ensemble → final ensemble → predict → evaluate)"
	$(BIN)/ray-tagger run $(DEMO) --preset demo
	@echo "== make demo done: results, plots and the submission in $(DEMO)/ (results.json, plots/, predictions/)"

test: install
	$(BIN)/python -m pytest

clean-demo:
	rm -rf $(DEMO)
