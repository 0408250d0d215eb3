# agent-runner: build, run and test the worker image. `make help` lists everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# ---- Tunables (override on the command line or in the environment) ----
REGISTRY          ?= ghcr.io
IMAGE             ?= $(REGISTRY)/stigmer/agent-runner
VERSION           ?= dev-local
BASE_IMAGE        ?= python:3.11-slim
# Architecture for `make base-image` (Debian name: amd64, arm64); another one runs under qemu
# and is tagged BASE_IMAGE-BASE_ARCH (a local name holds one architecture).
HOST_ARCH         := $(shell dpkg --print-architecture 2>/dev/null || uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/')
BASE_ARCH         ?= $(HOST_ARCH)
# Platforms for build-multiarch and push-multiarch.
PLATFORMS         ?= linux/amd64,linux/arm64
# true: push-image and push-multiarch also push the tag latest.
PUSH_LATEST       ?= false
# true: push-image and push-multiarch attach the image's CycloneDX SBOM to what they push.
SBOM              ?= true
# Where `make sbom` writes the SBOM.
SBOM_FILE         ?= .run/sbom-$(VERSION).cdx.json
# sign-image: the GPG key (fingerprint) that signs, in GNUPGHOME (default ~/.gnupg), its
# passphrase file if it has one, and the directory the signatures go to (publish it).
SIGN_KEY          ?=
SIGN_PASSPHRASE_FILE ?=
LOOKASIDE_DIR     ?= $(CURDIR)/.run/signatures
# The Debian security archive `make scan` checks the image's packages against.
SECURITY_MIRROR   ?= http://deb.debian.org/debian-security
# docker-login reads REGISTRY_USER and REGISTRY_TOKEN, else GITHUB_ACTOR and GITHUB_TOKEN,
# from the environment (never put a token on the make command line: it shows in `ps`).
# docker or podman; detected when unset (docker first).
CONTAINER_RUNTIME ?= $(shell command -v docker >/dev/null 2>&1 && echo docker || { command -v podman >/dev/null 2>&1 && echo podman || echo docker; })
# The client binary to run, e.g. DOCKER=/usr/bin/docker for a client with built-in BuildKit.
DOCKER            ?= $(CONTAINER_RUNTIME)
# CA bundle for builds behind a TLS-intercepting proxy, passed as a BuildKit secret.
CA_BUNDLE         ?= $(or $(PIP_CERT),$(REQUESTS_CA_BUNDLE))
LOCAL_CONTAINER   ?= agent-runner-local
WORKSPACE_DIR     ?= $(CURDIR)/workspace
TEMPORAL_ADDRESS  ?= localhost:7233
# Port of the Web UI of the dev server run-local starts; empty: the gRPC port + 1000 (8233).
TEMPORAL_UI_PORT  ?=
POETRY            ?= poetry
PYTEST_ARGS       ?=
# pytest-xdist workers: the suites mostly wait on servers and containers, so more than the cores.
TEST_WORKERS      ?= 3
BENCH_ARGS        ?=
BENCH_COMPARE     ?=
PROMPT            ?=
RUN_WORKSPACE     ?=

REVISION          ?= $(shell git rev-parse --verify -q HEAD || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

VENV := .venv
BIN  := $(VENV)/bin
TUNABLES := REGISTRY IMAGE VERSION BASE_IMAGE BASE_ARCH PLATFORMS PUSH_LATEST SBOM SBOM_FILE SIGN_KEY SIGN_PASSPHRASE_FILE \
            LOOKASIDE_DIR SECURITY_MIRROR CONTAINER_RUNTIME DOCKER CA_BUNDLE \
            LOCAL_CONTAINER WORKSPACE_DIR TEMPORAL_ADDRESS TEMPORAL_UI_PORT POETRY PYTEST_ARGS TEST_WORKERS BENCH_ARGS \
            BENCH_COMPARE PROMPT RUN_WORKSPACE \
            REVISION SOURCE_DATE_EPOCH
export PROMPT
export REGISTRY IMAGE VERSION BASE_IMAGE PLATFORMS PUSH_LATEST CONTAINER_RUNTIME DOCKER CA_BUNDLE LOCAL_CONTAINER WORKSPACE_DIR \
       TEMPORAL_ADDRESS TEMPORAL_UI_PORT REVISION SOURCE_DATE_EPOCH SBOM SIGN_KEY SIGN_PASSPHRASE_FILE LOOKASIDE_DIR SECURITY_MIRROR

.PHONY: help install lint typecheck unit build base-image build-image run-local ui test-image test test-all check-prereqs bench \
        submit logs stop clean \
        docker-login push-image build-multiarch push-multiarch sbom sign-image scan

help: # @HELP list the targets and the tunable variables with their current values
	@echo "Targets:"
	@grep -E '^[a-z][a-z-]*:.*# @HELP ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*# @HELP (.*)/  \1\t\2/' | expand -t 18
	@echo
	@echo "Variables:"
	@$(foreach v,$(TUNABLES),printf '  %-18s %s\n' '$(v)' '$($(v))';)

$(BIN)/pytest: pyproject.toml poetry.lock
	@command -v $(POETRY) >/dev/null || { echo "poetry not found: install it (pipx install poetry, or pip install poetry)"; exit 1; }
	$(POETRY) sync --no-interaction
	@touch $@

install: $(BIN)/pytest # @HELP create .venv with the worker and its dev tools (poetry install)

lint: install # @HELP ruff, hadolint on the Dockerfile, shellcheck on every shell script, actionlint on the workflows
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/shellcheck scripts/*.sh .ci/run
	$(BIN)/actionlint -shellcheck $(BIN)/shellcheck

typecheck: install # @HELP mypy --strict on the worker and the health check
	$(BIN)/mypy agent_runner healthcheck.py

unit: install # @HELP unit tests only (no Temporal, no engine)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

build: lint typecheck unit # @HELP lint, type check and unit tests

base-image: # @HELP build an offline stand-in for python:3.11-slim from Debian packages for BASE_ARCH (root, debootstrap)
	scripts/base-image.sh $(BASE_IMAGE)$(if $(filter-out $(HOST_ARCH),$(BASE_ARCH)),-$(BASE_ARCH)) $(BASE_ARCH)

build-image: # @HELP build the image IMAGE:VERSION (pulls the base, or builds it offline and says so)
	scripts/build-image.sh

docker-login: # @HELP log in to REGISTRY with REGISTRY_USER/REGISTRY_TOKEN (or GITHUB_ACTOR/GITHUB_TOKEN), token on stdin
	scripts/docker-login.sh

push-image: install # @HELP push IMAGE:VERSION; VERSION=vX.Y.Z also pushes vX.Y and vX, PUSH_LATEST=true also latest; attaches the SBOM
	scripts/push-image.sh

sbom: install # @HELP write the CycloneDX SBOM of IMAGE:VERSION (its Python distributions and Debian packages) to SBOM_FILE
	@mkdir -p $(dir $(SBOM_FILE))
	$(BIN)/python scripts/sbom.py $(IMAGE):$(VERSION) $(SBOM_FILE)

sign-image: # @HELP sign the pushed IMAGE:VERSION by digest with the GPG key SIGN_KEY; signatures to LOOKASIDE_DIR
	scripts/sign-image.sh

scan: # @HELP list the Debian packages of IMAGE:VERSION with pending security updates; fails when there are any
	scripts/scan.sh

build-multiarch: # @HELP build IMAGE:VERSION for every platform in PLATFORMS (buildx, BuildKit per platform, or podman)
	scripts/multiarch.sh build

push-multiarch: install # @HELP build for PLATFORMS and push one manifest list with the tags of push-image, an SBOM per platform
	scripts/multiarch.sh push

run-local: install # @HELP run the image against Temporal at TEMPORAL_ADDRESS (starts a dev server with its Web UI if none answers)
	scripts/run-local.sh

ui: # @HELP print the Temporal Web UI's link (run-local's dev server), and open it where a browser can be opened
	scripts/run-local.sh ui

PYTEST := AGENT_RUNNER_IMAGE=$(IMAGE):$(VERSION) $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

check-prereqs: # @HELP say in one line per tool what `make test-all` needs and is missing (TIER=test for make test)
	@scripts/check-prereqs.sh $(or $(TIER),test-all)

test-image: install # @HELP container tests against the already built image IMAGE:VERSION
	AGENT_RUNNER_IMAGE=$(IMAGE):$(VERSION) $(BIN)/pytest tests/container $(PYTEST_ARGS)

test: install # @HELP the contributor tier: image, unit, integration and container suites, no slow or publish tests (<10 min)
	@scripts/check-prereqs.sh test
	@$(MAKE) --no-print-directory build-image
	$(PYTEST) --timeout=600 -m "not slow and not publish" tests $(PYTEST_ARGS)

test-all: install # @HELP every suite, slow and publishing ones too (as CI runs it); a passing run rewrites docs/reliability.md
	@scripts/check-prereqs.sh test-all
	@$(MAKE) --no-print-directory build-image
	RELIABILITY_REPORT=docs/reliability.md $(PYTEST) --timeout=1800 tests $(PYTEST_ARGS)

bench: install build-image # @HELP measure size, build, time to healthy, health-check cost, stop, runs in flight (bench/results.md, bench/runs.md)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)
	$(BIN)/python bench/durable.py --image $(IMAGE):$(VERSION) $(if $(BENCH_COMPARE),--compare $(BENCH_COMPARE)) $(filter --smoke,$(BENCH_ARGS))

submit: install # @HELP start an agent run and wait for its result: make submit PROMPT="..." [RUN_WORKSPACE=dir]
	@test -n "$$PROMPT" || { echo 'submit: say what to do, e.g. make submit PROMPT="Write hello.py that prints hello"'; exit 2; }
	$(BIN)/python -m agent_runner.submit "$$PROMPT" $(if $(RUN_WORKSPACE),--workspace $(RUN_WORKSPACE)) --wait

logs: # @HELP follow the logs of the run-local container
	$(DOCKER) logs -f $(LOCAL_CONTAINER)

stop: # @HELP stop the run-local container and the dev server run-local started
	scripts/run-local.sh stop

clean: stop # @HELP remove the run-local container, the image tag, caches and .run/ (keeps .venv)
	-$(DOCKER) rmi $(IMAGE):$(VERSION) 2>/dev/null
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
