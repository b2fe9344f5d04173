# realtalk developer targets. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
TEST_VENV ?= .venv-test
BUILD_VENV ?= .venv-build
DOCS_VENV ?= .venv-docs
# The abi3 wheel is also tested on these (found under pyenv); the full suite runs on $(PYTHON).
EXTRA_PYTHONS ?= 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
CORE_TESTS ?= tests/test_cli.py tests/test_examples.py tests/test_events_codec.py \
	tests/test_events_conformance.py tests/test_events_replays.py tests/test_events_openai.py \
	tests/test_client.py tests/test_package.py
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

# The build tools live in their own environment, never in the machine's interpreter.
$(BUILD_VENV)/bin/maturin:
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/pip install -q "maturin>=1.9.4,<2" "ziglang>=0.13,<0.18" "auditwheel>=6" \
		"check-jsonschema>=0.29"

# On x86_64 Linux the wheel is linked by zig against glibc 2.17, so it installs on every
# manylinux2014 system (RHEL 7+, Debian 9+, Ubuntu 18.04+); auditwheel checks the tag it claims.
ifeq ($(shell uname -sm),Linux x86_64)
WHEEL_FLAGS ?= --zig --compatibility manylinux2014
WHEEL_TAG ?= manylinux_2_17_x86_64
endif

.PHONY: wheel
wheel: $(BUILD_VENV)/bin/maturin  ## build the release abi3 wheel into dist/ (manylinux2014 on x86_64 Linux)
	rm -rf dist
	PATH="$(CURDIR)/$(BUILD_VENV)/bin:$$PATH" $(BUILD_VENV)/bin/maturin build --release --locked \
		$(WHEEL_FLAGS) --out dist
ifdef WHEEL_TAG
	$(BUILD_VENV)/bin/auditwheel show dist/realtalk-*.whl | tee dist/auditwheel.txt
	grep -q '"$(WHEEL_TAG)"' dist/auditwheel.txt
	ls dist/realtalk-*.whl | grep -q 'manylinux2014_x86_64'
endif

.PHONY: test-rust
test-rust:  ## Rust unit tests of the pure core (no libpython needed)
	cargo test --locked --no-default-features

.PHONY: test
test: test-rust wheel  ## the full suite: Rust tests, then pytest against the wheel in a fresh venv
	rm -rf $(TEST_VENV)
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q "$$(ls dist/realtalk-*.whl)[test]"
	$(TEST_VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

.PHONY: test-pythons
test-pythons: wheel  ## the same wheel on each of EXTRA_PYTHONS: CLI, examples, events and client tests
	@set -e; for version in $(EXTRA_PYTHONS); do \
		python=$$(ls -d $(PYENV_ROOT)/versions/$$version.*/bin/python$$version 2>/dev/null \
			| sort -V | tail -n 1); \
		if [ -z "$$python" ]; then \
			echo "Python $$version not found under $(PYENV_ROOT)/versions"; exit 1; fi; \
		echo "== $$python"; \
		rm -rf $(TEST_VENV)-$$version; \
		$$python -m venv $(TEST_VENV)-$$version; \
		$(TEST_VENV)-$$version/bin/pip install -q "$$(ls dist/realtalk-*.whl)[test]"; \
		$(TEST_VENV)-$$version/bin/python -m pytest -q -p no:cacheprovider $(CORE_TESTS); \
	done

# The transport relies on private parts of websockets and anyio, so pyproject.toml bounds them
# (see the comment there). This runs the transport tests (the canaries among them) against the
# newest releases of websockets, anyio and h11, bounds ignored, in a scratch venv: a failure
# names the upgrade that needs work before a bound is raised. Not run by .ci/run: its answer
# depends on what the package index holds that day, and it must not fail an unrelated change.
NEWEST_VENV ?= .venv-newest
TRANSPORT_TESTS ?= tests/test_transport.py tests/test_transport_sansio.py \
	tests/test_transport_frames.py tests/test_transport_http.py tests/test_transport_options.py \
	tests/test_transport_canaries.py

.PHONY: test-newest
test-newest: wheel  ## transport tests against the newest websockets, anyio and h11 (bounds ignored)
	rm -rf $(NEWEST_VENV)
	$(PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/pip install -q "$$(ls dist/realtalk-*.whl)[test]"
	$(NEWEST_VENV)/bin/pip install -q --upgrade websockets anyio h11
	$(NEWEST_VENV)/bin/pip list 2>/dev/null | grep -Ei '^(websockets|anyio|h11) '
	$(NEWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) $(TRANSPORT_TESTS)

$(DOCS_VENV)/bin/mkdocs:
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q "mkdocs>=1.6,<2" "mkdocstrings>=0.29,<2" \
		"mkdocstrings-python>=1.16,<3"

.PHONY: docs
docs: $(DOCS_VENV)/bin/mkdocs  ## the API reference from the docstrings into site/ (a warning fails it)
	$(DOCS_VENV)/bin/mkdocs build --strict --quiet

.PHONY: check-workflows
check-workflows: $(BUILD_VENV)/bin/maturin  ## validate the release workflow against the GitHub Actions schema
	$(BUILD_VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

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
