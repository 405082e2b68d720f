"""The control-plane tier: `up --backend controlplane` once for the tier's test module, in a state directory of its own.

Everything here is marked `controlplane` and skipped, with the reason, until `make controlplane` has
built the binaries; nothing here passes without them (no mock of any Kubernetes component). The
module's `down` must delete the namespaces and see them finish terminating. Module scope, not session: in
`make test` the control plane (etcd, the API server, the operators, Prometheus) is stopped as soon as the
tier's tests are done instead of running beside the integration tiers until the session ends.
"""

from __future__ import annotations

import json
import os

import pytest

from testbed_cli import run_testbed

UP_TIMEOUT_S = 1200


def pytest_addoption(parser):
    parser.addoption("--kind-path-at", default=None, metavar="CHECKOUT",
                     help="render each platform's kind objects with another checkout of this project (e.g. "
                          "`git worktree add /tmp/prefix COMMIT`; write --kind-path-at=DIR) and run the control-plane checks on those "
                          "(testbed/backends/controlplane/elsewhere.py)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/controlplane/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.controlplane)


def _missing() -> list[str]:
    from testbed.backends.controlplane import build

    return [name for name, built in build.find().items() if built is None]


@pytest.fixture(scope="module")
def controlplane(tmp_path_factory, request):
    """(status document, `up` output) of a control plane that ran the kind backend's deploy steps.

    `up` exits non-zero when a check fails but leaves everything running; the tests then name which.
    """
    missing = _missing()
    if missing:
        pytest.skip(f"control-plane binaries not built ({', '.join(missing)}): run `make controlplane` "
                    f"(Go >= 1.26; README 'The control-plane backend')")
    state = tmp_path_factory.mktemp("controlplane-state")
    # The run records its level (testbed/kubernetes_path.py) among results: not the user's results/.
    saved = os.environ.get("TESTBED_RESULTS_DIR")
    os.environ["TESTBED_RESULTS_DIR"] = str(state / "results")
    other = request.config.getoption("--kind-path-at")
    env = {"TESTBED_KIND_PATH_AT": other} if other else {}
    up = run_testbed("up", "--backend", "controlplane", state_dir=state, check=False, timeout=UP_TIMEOUT_S, env=env)
    status = json.loads(run_testbed("status", "--backend", "controlplane", "--json", state_dir=state,
                                    check=False).stdout)
    try:
        if not status.get("findings"):
            pytest.fail(f"`up --backend controlplane` stopped before any check (exit {up.returncode}):\n"
                        f"{up.stderr[-4000:]}")
        yield status, up.stderr
    finally:
        down = run_testbed("down", "--backend", "controlplane", state_dir=state, check=False, timeout=600)
        after = json.loads(run_testbed("status", "--backend", "controlplane", "--json", state_dir=state,
                                       check=False).stdout)
        assert down.returncode == 0, down.stderr[-3000:]
        assert "finished terminating" in down.stdout, down.stdout
        # Every namespace up created, the operators' too (KubeRay's comes from no rendered chart).
        operator_namespaces = {op["identity"].split()[1].split("/")[0] for op in (status.get("operators") or {}).values()
                               if op["identity"].startswith("ServiceAccount ")}
        assert operator_namespaces <= set(status["namespaces"]), (operator_namespaces, status["namespaces"])
        for ns in status["namespaces"]:
            assert f"deleted namespace {ns}" in down.stdout, down.stdout
        assert after["state"] == "stopped", after
        if saved is None:
            os.environ.pop("TESTBED_RESULTS_DIR", None)
        else:
            os.environ["TESTBED_RESULTS_DIR"] = saved
