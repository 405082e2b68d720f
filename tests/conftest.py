"""Shared fixtures, and the tests' own place on the machine.

The tests never touch a testbed the user runs: the session gets a state directory and a results
directory of its own (a temporary folder, removed when every test passed), and every port it uses is
chosen free. Only the runtime environments are shared with the user's testbed (TESTBED_ENVS_DIR):
they are immutable and named by their pins (testbed/backends/local/envs.py), so a cold machine builds
each once. `testbed_up` is the session's testbed (read-only for tests); `own_testbed` is a second one
for tests that kill its processes.

Tiers: tests marked `integration` start runtimes or build their environments; tests marked
`controlplane` (tests/controlplane/) start the control plane built by `make controlplane` and are
skipped without it; the others (the fast tier, `pytest -m "not integration and not controlplane"`)
may do neither, which `_fast_tier_guard` enforces in-process.
The e2e tests (tests/e2e/) need Docker and kind; they are marked `e2e` and skipped unless `--e2e`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _users_envs_dir() -> str:
    if os.environ.get("TESTBED_ENVS_DIR"):
        return os.environ["TESTBED_ENVS_DIR"]
    return str(Path(os.environ.get("TESTBED_STATE_DIR") or REPO / ".testbed") / "envs")


# Before anything imports testbed (testbed.results reads TESTBED_RESULTS_DIR at import).
SESSION_DIR = Path(tempfile.mkdtemp(prefix="testbed-tests-"))
os.environ["TESTBED_ENVS_DIR"] = _users_envs_dir()
os.environ["TESTBED_STATE_DIR"] = str(SESSION_DIR / "state")
os.environ["TESTBED_RESULTS_DIR"] = str(SESSION_DIR / "results")
# A readiness limit for a machine others load too (CI shares its 2 cores): a runtime that never gets ready
# still fails, only later. The user's own setting wins.
os.environ.setdefault("TESTBED_READY_TIMEOUT_S", "900")

import pytest  # noqa: E402

from testbed.backends.local import envs, processes  # noqa: E402
from testbed_cli import SESSION_PLATFORMS, run_testbed  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--e2e", action="store_true", help="run the kind e2e tests (needs Docker and kind)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


def pytest_report_header(config):
    return [f"testbed: state and results under {SESSION_DIR}; runtime environments in {os.environ['TESTBED_ENVS_DIR']}"]


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(SESSION_DIR, ignore_errors=True)
    else:
        print(f"\ntestbed: the session's state, logs and results are kept in {SESSION_DIR}")


# --- the fast tier builds no runtime environment -----------------------------------------------------
_FAST = {"now": False}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _FAST["now"] = not (item.get_closest_marker("integration") or item.get_closest_marker("e2e"))


def _guarded(real):
    def ensure(spec, *args, **kwargs):
        if _FAST["now"]:
            pytest.fail(f"a test of the fast tier asked for the runtime environment {spec.name!r}: mark it "
                        f"`integration` (the fast tier builds no environment and starts no runtime)", pytrace=False)
        return real(spec, *args, **kwargs)
    return ensure


def _install_guard():
    from testbed import detectors

    envs.ensure = _guarded(envs.ensure)
    detectors.ensure_env = _guarded(detectors.ensure_env)


_install_guard()


# --- testbeds ------------------------------------------------------------------------------------------
def _up(state_dir: Path | None = None) -> dict:
    run_testbed("up", "--platforms", SESSION_PLATFORMS, state_dir=state_dir)
    return json.loads(run_testbed("status", "--json", state_dir=state_dir).stdout)


def _down_and_check(status: dict, state_dir: Path | None = None) -> None:
    run_testbed("down", state_dir=state_dir, check=False)
    # `down` must free every port the testbed held.
    ports = [port for p in status.get("platforms", {}).values() for port in p["ports"].values()]
    if status.get("prometheus"):
        ports.append(int(status["prometheus"]["url"].rsplit(":", 1)[1]))
    ports += [svc["port"] for key, svc in status.items() if key.endswith("_exporter") and svc]
    ports += [port for p in ((status.get("detection") or {}).get("processes") or {}).values()
              for port in p["ports"].values()]
    still = [port for port in ports if processes.is_listening(port)]
    assert not still, f"ports still listening after `down`: {still}"
    assert json.loads(run_testbed("status", "--json", state_dir=state_dir).stdout)["state"] == "stopped"


@pytest.fixture(scope="session")
def testbed_up():
    """The session's local testbed (its own state dir), up for the whole session: the `status --json`
    document. Tests only read it and send it requests; `down` runs at the end, and must free every port."""
    status = _up()
    try:
        yield status
    finally:
        _down_and_check(status)


@pytest.fixture(scope="session")
def own_testbed(tmp_path_factory):
    """A second testbed (a state dir of its own) for the tests that kill what it runs, so the session's
    `testbed_up` stays as it was. Such a test starts with `own_testbed.ensure_running()` (which repairs
    whatever an earlier test left dead), so none depends on another's order. One per session, not per
    module: a six-platform `up` and `down` cost 4-5 min on 2 cores, and the repair makes sharing safe."""
    state_dir = tmp_path_factory.mktemp("own-testbed")
    bed = OwnTestbed(state_dir, _up(state_dir))
    try:
        yield bed
    finally:
        _down_and_check(bed.status() if bed.status().get("platforms") else bed.first_status, state_dir)


class OwnTestbed:
    def __init__(self, state_dir: Path, status: dict):
        self.state_dir = state_dir
        self.first_status = status

    def cli(self, *args: str, check: bool = True):
        return run_testbed(*args, state_dir=self.state_dir, check=check)

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json", check=False).stdout)

    def ensure_running(self) -> dict:
        """`up` (a no-op on a running testbed, a repair on a degraded one); the status after it."""
        status = self.status()
        if status["state"] != "running":
            self.cli("up")
            status = self.status()
        assert status["state"] == "running", status.get("problems")
        return status
