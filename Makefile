# The two commands the README starts with: `make up` and `make test`.
# Both set up everything on a fresh Debian/Ubuntu machine first (idempotent).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: up test setup prometheus down status bench-loadgen perf controlplane test-controlplane

up: setup
	$(PY) -m testbed up

test: setup
	$(PY) -m pytest -q

setup: $(STAMP) prometheus

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

down status:
	$(PY) -m testbed $@

# Performance (issue 6): the load generator against wrk on a static nginx (needs the Debian packages
# wrk and nginx-light), then the full performance experiment (brings the testbed up and down itself).
bench-loadgen: setup
	$(PY) experiments/loadgen_vs_wrk.py

perf: setup
	$(PY) experiments/performance.py

# The control-plane backend (issue 12): etcd, Kubernetes, kwok, helm, the operators and Prometheus built
# from source with Go >= 1.26 (no Docker), cached by version under ~/.cache/testbed/controlplane.
# The first build takes long (README); later runs check the cache in seconds.
controlplane: setup
	$(PY) -m testbed.backends.controlplane.build

test-controlplane: controlplane
	$(PY) -m pytest -q -m controlplane tests/controlplane
