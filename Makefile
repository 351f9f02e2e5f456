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

# The suite in two parts: TEST_WORKERS pytest processes side by side, each taking whole test files
# (one file's tests share one Ray session), then the tests that must run alone (marked serial: they
# stop every Ray process on the machine). `make test TEST_WORKERS=1` runs the first part in one process.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -m serial

clean-demo:
	rm -rf $(DEMO)
