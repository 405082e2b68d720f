"""Shared fixtures, and the tests' own place on the machine.

The tests never touch a testbed the user runs: the session gets a state directory and a results
directory of its own (a temporary folder, removed when every test passed), and every port it uses is
chosen free. Only the runtime environments are shared with the user's testbed (TESTBED_ENVS_DIR):
they are immutable and named by their pins (testbed/backends/local/envs.py), so a cold machine builds
each once. The session runs one testbed: `testbed_up` is its status for tests that only read it and send it
requests; `own_testbed` is the same testbed for a test that kills, overloads or restarts what it runs, and
repairs it afterwards.

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
def session_testbed():
    """The session's one local testbed (its own state dir, every session platform), up for the whole session;
    `down` runs at the end and must free every port. One, not two: a second six-platform testbed held another
    ~6.6 GB beside the user-model cases' testbeds and cost its own `up` and `down`. Tests reach it through
    `testbed_up` (read and send requests) or `own_testbed` (kill, overload, restart: repaired afterwards)."""
    state_dir = Path(os.environ["TESTBED_STATE_DIR"])
    bed = Testbed(state_dir, _up(state_dir))
    try:
        yield bed
    finally:
        last = bed.status()
        _down_and_check(last if last.get("platforms") else bed.first_status, bed.state_dir)


@pytest.fixture(scope="module")
def testbed_up(session_testbed):
    """The session testbed's `status --json` document, taken whole at the start of each module (repaired first
    if an earlier test left it degraded). Tests only read it and send it requests."""
    return session_testbed.ensure_running()


@pytest.fixture
def own_testbed(session_testbed):
    """The session's testbed for a test that kills, overloads or restarts what it runs. Such a test starts
    with `own_testbed.ensure_running()` and the testbed is repaired after it, so no test depends on another's
    order and the readers' modules find it whole."""
    yield session_testbed
    session_testbed.ensure_running()


class Testbed:
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
            # degraded: `up` restarts what died; stopped (a test ran `down`): start the session's platforms
            self.cli("up", *(["--platforms", SESSION_PLATFORMS] if status["state"] == "stopped" else []))
            status = self.status()
        assert status["state"] == "running", status.get("problems")
        return status
