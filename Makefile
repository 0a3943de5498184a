# battery-twin: two commands on a fresh Debian / Ubuntu / Raspberry Pi OS machine.
#   make run    create .venv, install the agent, run it on the simulated rig (default config; CONFIG=file to override)
#   make test   install what the tests need (Python deps into .venv; apt packages when root) and run the suite
# Also: make bench (benchmark figures), make soak (long reliability runs), make clean.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# command:package pairs the tests need from the system (mosquitto stands in for IoT Core, socat makes pty pairs,
# chromium is the browser the dashboard tests drive with Playwright; systemd-analyze/systemd-sysusers check the unit
# and run install.sh in a throwaway root, shellcheck lints it; podman, runc and mmdebstrap build and run the
# container image offline; qemu-user-static and binfmt-support run the arm64 smoke test under emulation).
TEST_SYSTEM_PACKAGES := mosquitto:mosquitto mosquitto_pub:mosquitto-clients socat:socat chromium:chromium \
                        systemd-analyze:systemd systemd-sysusers:systemd shellcheck:shellcheck \
                        podman:podman runc:runc mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static \
                        update-binfmts:binfmt-support \
                        mdb-export:mdbtools

.PHONY: run test lint bench soak system-deps checkov-venv clean image lock

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

# The run target includes the dashboard (aiohttp): the default config serves it on 127.0.0.1:8080.
$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -e '.[dashboard]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-run
	$(PIP) install -e '.[dev,train,dashboard,cloud,cyclers]'
	@touch $@

# checkov lives in a virtual environment of its own: it pulls bc-python-hcl2, which silently overwrites
# python-hcl2's hcl2 package, and it pins packaging/dateutil apart from the project. tests/cloud finds it here.
CHECKOV_VENV ?= .venv-checkov
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check -q install 'checkov>=3.2,<4'
	@touch $@

checkov-venv: $(CHECKOV_VENV)/.installed

run: $(VENV)/.installed-run
	$(VENV)/bin/battery-twin run $(if $(CONFIG),--config $(CONFIG))

system-deps:
	@missing=""; \
	for pair in $(TEST_SYSTEM_PACKAGES); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "The tests need these system packages:$$missing"; \
	    echo "Install them with: sudo apt-get install -y$$missing   (then run make test again)"; \
	    exit 1; \
	  fi; \
	fi

# Lint runs first in `make test`: ruff (lint and format), the import-linter contracts in pyproject.toml (the
# dependency arrows of DESIGN.md; tests/test_architecture.py shows each contract failing on a forbidden import) and
# mypy, strict on agent/ and drivers/ (configured in pyproject.toml).
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

test: system-deps $(VENV)/.installed-test $(CHECKOV_VENV)/.installed lint
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

# The container image (container/README.md): offline, on a Debian base from mmdebstrap cached in
# $(BATTERY_TWIN_CACHE) (default /var/cache/battery-twin); ARCH=arm64 builds the Raspberry Pi variant under qemu.
ARCH ?= amd64
image:
	container/image.sh $(ARCH)

# The lock of the edge install (base + [dashboard], x86_64 and aarch64 wheels with hashes) that the image installs.
lock: $(VENV)/.installed-test
	$(PY) container/lock.py

bench: system-deps $(VENV)/.installed-test
	$(PY) bench/run_all.py

soak: system-deps $(VENV)/.installed-test
	BATTERY_TWIN_SOAK=1 $(PY) -m pytest -q -m "soak or not soak" --timeout=7200 $(PYTEST_ARGS) tests/reliability

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) var build *.egg-info .pytest_cache test-artifacts
