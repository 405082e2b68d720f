# The two commands the README starts with: `make up` and `make test`.
# Both set up everything on a fresh Debian/Ubuntu machine first (idempotent).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: up test setup prometheus browser java down status bench-loadgen perf

up: setup
	$(PY) -m testbed up

test: setup
	$(PY) -m pytest -q

setup: $(STAMP) prometheus browser java

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade uv
	.venv/bin/uv pip install -q --python $(PY) -e '.[test]'
	touch $(STAMP)

# Prometheus is a server binary, not a Python package: the Debian package provides it.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || test -n "$$TESTBED_PROMETHEUS" || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; \
	    else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends prometheus; fi; }

# TorchServe's frontend is Java (17 or later): Debian's openjdk-17-jre-headless unless one is already there.
java:
	@java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])' || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; \
	    else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; fi; }

# The report test renders the HTML in headless Chromium and checks the screenshot (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	    else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends chromium; fi; }

down status:
	$(PY) -m testbed $@

# Performance (issue 6): the load generator against wrk on a static nginx (needs the Debian packages
# wrk and nginx-light), then the full performance experiment (brings the testbed up and down itself).
bench-loadgen: setup
	$(PY) experiments/loadgen_vs_wrk.py

perf: setup
	$(PY) experiments/performance.py
