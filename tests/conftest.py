"""Shared fixtures. `testbed_up` brings the real local testbed up once per test session.

The e2e tests (tests/e2e/) need Docker and kind; they are marked `e2e` automatically and
skipped unless `--e2e` is given.
"""

from __future__ import annotations

import json
import os

import pytest

from testbed.backends.local import processes
from testbed_cli import run_testbed


def pytest_addoption(parser):
    parser.addoption("--e2e", action="store_true", help="run the kind e2e tests (needs Docker and kind)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def testbed_up():
    """The local testbed, up for the whole session (default state dir, so runtime venvs are reused).

    Yields the `status --json` document; runs `down` at the end whatever happened, then checks
    that nothing of the testbed still listens.
    """
    run_testbed("up")
    status = json.loads(run_testbed("status", "--json").stdout)
    try:
        yield status
    finally:
        run_testbed("down", check=False)
    # `down` must free every port the testbed held (checked once per session, here).
    ports = [port for p in status["platforms"].values() for port in p["ports"].values()]
    ports.append(int(status["prometheus"]["url"].rsplit(":", 1)[1]))
    ports += [svc["port"] for key, svc in status.items() if key.endswith("_exporter") and svc]
    still = [port for port in ports if processes.is_listening(port)]
    assert not still, f"ports still listening after `down`: {still}"
    assert json.loads(run_testbed("status", "--json").stdout)["state"] == "stopped"

