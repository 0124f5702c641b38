# The two commands: `make run` (start a hub on the embedded default) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SDK_VENV := .venv-sdk
IRONHUB_DATA ?= ./ironhub-data

.PHONY: run test lint typecheck unit bench clean

$(VENV)/.run-installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-installed

# The reference device SDK pins paho-mqtt<2, so it lives in its own virtualenv and the
# interop tests drive it as a subprocess (tests/interop/).
$(SDK_VENV)/.installed: tests/interop/requirements.txt
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install -q -r tests/interop/requirements.txt
	touch $@

run: $(VENV)/.run-installed
	$(VENV)/bin/ironhub serve --data $(IRONHUB_DATA)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.test-installed
	$(VENV)/bin/mypy

# The pure packages (protocol and security rules) must keep 100 % branch coverage (STYLE.md).
PURE := src/ironhub/codec/*,src/ironhub/pki/*,src/ironhub/registry/sealing.py,src/ironhub/registry/twin.py,src/ironhub/registry/query.py,src/ironhub/hub/ratelimit.py,src/ironhub/hub/outbound.py,src/ironhub/audit/_*,src/ironhub/audit/__init__.py,src/ironhub/access/policy.py,src/ironhub/access/roles.py,src/ironhub/monitor/model.py,src/ironhub/monitor/events.py,src/ironhub/monitor/detectors.py,src/ironhub/monitor/alerts.py,src/ironhub/monitor/fleet.py,src/ironhub/monitor/profiles.py,src/ironhub/monitor/advisories.py,src/ironhub/monitor/compliance.py

test: $(VENV)/.test-installed $(SDK_VENV)/.installed lint typecheck
	IRONHUB_SDK_PYTHON=$(abspath $(SDK_VENV))/bin/python $(VENV)/bin/pytest -n 2 -q \
		--cov --cov-report=term:skip-covered
	$(VENV)/bin/coverage report --include='$(PURE)' --fail-under=100

bench: $(VENV)/.test-installed
	$(VENV)/bin/python bench/telemetry.py

clean:
	rm -rf $(VENV) $(SDK_VENV) .pytest_cache .mypy_cache .ruff_cache
