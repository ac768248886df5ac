# nicelab: `make run` trains NICE on the parabola with the reference solution,
# `make test` runs the whole test suite. Both create the virtual environment first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test checks grade docs serve fixtures figures stubs notebooks bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[docs,dev]"
	touch $(STAMP)

run: $(STAMP)  ## the main job: train the reference NICE on the parabola (about a minute)
	$(BIN)/nicelab train parabola --impl solutions

test: $(STAMP)  ## the whole test suite: the checks on the reference, then the project's tests
	$(BIN)/python -m pytest checks tests --impl solutions

checks: $(STAMP)  ## grade your lessons (what a student runs)
	$(BIN)/python -m pytest checks

grade: $(STAMP)
	$(BIN)/nicelab grade

stubs: $(STAMP)  ## regenerate lessons/ from the marked blocks in solutions/ (never overwrites your edits)
	$(BIN)/nicelab stubs

notebooks: $(STAMP)  ## regenerate notebooks/*.ipynb and docs/notebooks.md from notebooks/src/
	$(BIN)/nicelab notebooks

fixtures: $(STAMP)  ## the reference models the stage 4-5 checks use, shipped in nicelab/grader/pretrained/
	$(BIN)/python -m nicelab.grader.fixtures

figures: $(STAMP)  ## the docs' figures, from the reference, deterministically
	$(BIN)/nicelab figures

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

serve: $(STAMP)
	$(BIN)/mkdocs serve

bench: $(STAMP)
	$(BIN)/nicelab bench

lint: $(STAMP)
	$(BIN)/ruff check nicelab benchmarks solutions lessons checks tests notebooks

clean:
	rm -rf $(VENV) site runs .nicelab-cache
