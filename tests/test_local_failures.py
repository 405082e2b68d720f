"""Bad input and failures at `up`: clear errors naming the thing, nothing left running."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from testbed_cli import run_testbed
from deployers import kserve, seldon
from testbed import detectors
from testbed.settings import Settings
from testbed.backends.local import envs, processes


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def test_unknown_platform(state_dir):
    # TF Serving is a system of the study, not a registered platform (its server is not installable here).
    proc = run_testbed("up", "--platforms", "kserve,tfserving", state_dir=state_dir, check=False)
    assert proc.returncode == 2 and "Unknown platform 'tfserving'" in proc.stderr and "--platforms" in proc.stderr


def test_missing_prometheus_binary(state_dir, monkeypatch):
    monkeypatch.setenv("TESTBED_PROMETHEUS", "/nonexistent/prometheus")
    proc = run_testbed("up", state_dir=state_dir, check=False)
    assert proc.returncode == 2
    assert "'prometheus' binary" in proc.stderr and "apt-get install prometheus" in proc.stderr
    assert not (state_dir / "run" / "state.json").exists()


def test_busy_prometheus_port(state_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_testbed("up", "--prometheus-port", str(port), state_dir=state_dir, check=False)
    assert proc.returncode == 2 and f"Port {port}" in proc.stderr and f"pid {os.getpid()}" in proc.stderr


def test_corrupt_artifact(state_dir):
    meta = json.loads(run_testbed("artifact", state_dir=state_dir).stdout)
    model = state_dir / "artifacts" / f"{meta['name']}-{meta['sha256'][:12]}" / "model.joblib"
    model.write_bytes(b"not a model")
    proc = run_testbed("up", state_dir=state_dir, check=False)
    assert proc.returncode == 2 and "model.joblib has sha256" in proc.stderr and "--rebuild" in proc.stderr


def test_another_command_holding_the_lock(state_dir):
    from testbed import state

    with state.exclusive(state_dir / "run", "up"):
        proc = run_testbed("up", state_dir=state_dir, check=False)
    assert proc.returncode == 2 and "already running" in proc.stderr


@pytest.mark.integration
def test_runtime_that_dies_at_start_stops_the_others(state_dir, tmp_path):
    # A runtime environment whose python dies at once, as a broken image would; every other environment is
    # the shared one (through links: the shared directory itself is never changed).
    shared = Settings().envs_dir
    envs_dir = tmp_path / "envs"
    envs_dir.mkdir()
    for spec in (seldon.ENV, detectors.ENV):
        (envs_dir / envs.env_dir(spec, shared).name).symlink_to(envs.ensure(spec, shared))
    env_dir = envs.env_dir(kserve.ENV, envs_dir)
    (env_dir / "bin").mkdir(parents=True)
    fake = env_dir / "bin" / "python"
    fake.write_text("#!/bin/sh\necho 'boom: this runtime cannot start' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (env_dir / envs.STAMP).write_text(json.dumps({"digest": kserve.ENV.digest()}))

    proc = run_testbed("up", "--platforms", "kserve,seldon", state_dir=state_dir, check=False,
                       env={"TESTBED_ENVS_DIR": str(envs_dir)})
    assert proc.returncode == 2
    assert "The kserve runtime did not become ready" in proc.stderr and "boom" in proc.stderr
    last = json.loads((state_dir / "last-run" / "state.json").read_text())
    survivor = last["platforms"]["seldon"]
    assert survivor["pid"] and processes.session_members(survivor["pid"]) == []
    for port in survivor["ports"].values():
        assert not processes.is_listening(port)
    assert not processes.session_members(last["prometheus"]["pid"])
