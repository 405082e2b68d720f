# The two commands the README starts with: `make up` and `make test`.
# Both set up everything on a fresh Debian/Ubuntu machine first (idempotent).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: up test test-fast setup system-packages down status bench-loadgen perf controlplane test-controlplane

up: setup
	$(PY) -m testbed up

# Everything that runs here: the fast tier and the integration tier (real runtimes, own state dir and ports).
test: setup
	$(PY) -m pytest -q

# The fast tier alone: starts no runtime, builds no runtime environment, starts no control plane.
test-fast: setup
	$(PY) -m pytest -q -m "not integration and not controlplane"

setup: system-packages $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade uv
	.venv/bin/uv pip install -q --python $(PY) -e '.[test]'
	touch $(STAMP)

# Programs the testbed and its tests run that are not Python packages, as Debian packages:
#   prometheus         the server `up` starts and every probe queries ($$TESTBED_PROMETHEUS names another binary)
#   nginx-light, wrk   the load generator's tests and benchmark (a static nginx, wrk as the reference client)
#   gcc, libc6-dev     the load generator's engine is C, compiled on first use
#   python3-venv       `python3 -m venv .venv`
#   chromium           the report test renders the HTML headless and checks the screenshot
#   openjdk-17-jre-headless  TorchServe's frontend is Java (17 or later); skipped when a java 17+ is there
# Only what is missing is installed (`apt-get update` first), as root or through sudo.
system-packages:
	@missing=""; \
	{ command -v prometheus >/dev/null 2>&1 || test -n "$$TESTBED_PROMETHEUS"; } || missing="$$missing prometheus"; \
	{ command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx; } || missing="$$missing nginx-light"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	{ command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || test -n "$$CC"; } || missing="$$missing gcc"; \
	test -f /usr/include/stdio.h || test -n "$$CC" || missing="$$missing libc6-dev"; \
	python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || test -x $(PY) || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])' || missing="$$missing openjdk-17-jre-headless"; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null 2>&1 || { echo "error: install these (Debian package names):$$missing" >&2; exit 1; }; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

down status:
	$(PY) -m testbed $@

# Performance (issue 6): the load generator against wrk on a static nginx, then the full performance
# experiment (brings the testbed up and down itself).
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
