# realtalk developer targets. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
TEST_VENV ?= .venv-test
PYTEST_ARGS ?=

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "maturin>=1.9.4,<2"

.PHONY: build-dev
build-dev: $(VENV)/bin/python  ## build the extension in release mode into .venv for iteration
	rm -f python/realtalk/*.so
	$(VENV)/bin/maturin develop --release --extras test,bench

.PHONY: wheel
wheel:  ## build the release abi3 wheel into dist/
	$(PYTHON) -m pip install -q "maturin>=1.9.4,<2"
	rm -rf dist
	$(PYTHON) -m maturin build --release --locked --out dist

.PHONY: test-rust
test-rust:  ## Rust unit tests of the pure core (no libpython needed)
	cargo test --locked --no-default-features

.PHONY: test
test: test-rust wheel  ## the full suite: Rust tests, then pytest against the wheel in a fresh venv
	rm -rf $(TEST_VENV)
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q "$$(ls dist/realtalk-*.whl)[test]"
	$(TEST_VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

.PHONY: test-ecosystem
test-ecosystem:  ## openai, openai-agents, pipecat and livekit-agents against `realtalk simulate` (after `make test`)
	@test -x $(TEST_VENV)/bin/python || { echo "test-ecosystem: $(TEST_VENV) is missing; run 'make test' first" >&2; exit 2; }
	$(TEST_VENV)/bin/python ecosystem/envs.py
	$(TEST_VENV)/bin/python -m pytest ecosystem -q -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: lint
lint:  ## clippy (pedantic) and the stub check
	cargo clippy --all-targets --no-default-features -- -D warnings
	cargo clippy --lib -- -D warnings
	$(VENV)/bin/python -m mypy.stubtest realtalk._audio --allowlist .mypy-stubtest-allowlist

.PHONY: bench
bench: build-dev  ## criterion benches, then the side-by-side Python benches
	cargo bench --no-default-features
	$(VENV)/bin/python -m pytest benches -p no:cacheprovider --benchmark-only --benchmark-columns=median,iqr,ops
