"""Bad input on the kind path, on this machine for real: missing tools, failing commands, API rejections.

(No machine here has a Docker engine; these tests make that and the other gaps deterministic by
running with an empty PATH, so they behave the same on a machine that has the tools.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.backends.kind import preflight
from testbed.backends.kind.kube import rejection_message
from testbed.backends.kind.pins import pins
from testbed.backends.kind.plan import Plan
from testbed.errors import CommandFailed, ManifestRejected

REPO = Path(__file__).resolve().parent.parent


def run_cli(tmp_path: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TESTBED_STATE_DIR": str(tmp_path / "state")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_preflight_reports_every_missing_tool_with_its_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    report = preflight.check(pins())
    assert not report.ok
    by_tool = {p.split(":", 1)[0]: p for p in report.problems}
    assert set(by_tool) - {"ports"} == {"docker", "kind", "kubectl", "helm"}  # ports: only if 30090-30105 are busy
    by_tool.pop("ports", None)
    for name, problem in by_tool.items():
        assert "not found on PATH" in problem and pins().tools[name].install in problem


def test_up_without_tools_fails_before_touching_anything(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run_cli(tmp_path, "up", "--backend", "kind", path=str(empty))
    assert proc.returncode == 2, proc.stderr
    assert "[1/" in proc.stderr and "preflight: FAILED" in proc.stderr
    error = proc.stderr[proc.stderr.index("error: "):]
    assert re.search(r"The kind backend cannot start; [4-9] prerequisite\(s\) missing", error)  # 5 if ports are busy
    for name in ("docker", "kind", "kubectl", "helm"):
        assert f"  - {name}: not found on PATH" in error
    assert "--dry-run" in error
    assert not (tmp_path / "state" / "kind").exists()  # no cluster attempted, nothing recorded


def test_status_and_down_when_nothing_was_started(tmp_path):
    status = run_cli(tmp_path, "status", "--backend", "kind", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert (doc["backend"], doc["state"], doc["platforms"]) == ("kind", "stopped", {})
    down = run_cli(tmp_path, "down", "--backend", "kind", path=str(tmp_path))  # even without kind installed
    assert down.returncode == 0 and down.stdout.strip() == "Nothing was running.", down.stderr


def test_failed_command_reports_its_output_and_retries(tmp_path):
    counter = tmp_path / "attempts"
    script = f"echo attempt >> {counter}; echo 'Error: INSTALLATION FAILED: timed out waiting' >&2; exit 1"
    plan = Plan(dry_run=False)
    plan.begin("helm example")
    with pytest.raises(CommandFailed) as info:
        plan.command(["sh", "-c", script], timeout_s=30, attempts=2, hint="its pods and events follow")
    assert counter.read_text().count("attempt") == 2
    message = str(info.value)
    assert "exited with code 1" in message and "INSTALLATION FAILED: timed out waiting" in message
    assert message.endswith("its pods and events follow")


def test_command_timeout_is_named(tmp_path):
    plan = Plan(dry_run=False)
    with pytest.raises(CommandFailed, match="timed out"):
        plan.command(["sleep", "5"], timeout_s=0.5)


def test_api_rejection_message_is_kept_verbatim():
    # The shape of a Status the API server returns for a strict-validation failure.
    body = json.dumps({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "BadRequest", "code": 400,
        "message": '.spec.predictor.model.modelFromat: field not declared in schema',
        "details": {"causes": [{"reason": "FieldValueInvalid", "field": "spec.predictor.model.modelFromat",
                                "message": "field not declared in schema"}]},
    }).encode()
    message, causes = rejection_message(body)
    assert message == ".spec.predictor.model.modelFromat: field not declared in schema"
    assert causes == ["spec.predictor.model.modelFromat: field not declared in schema"]
    error = ManifestRejected("InferenceService", "reference-classifier", "testbed", 400, message)
    assert error.message == message and "InferenceService testbed/reference-classifier (HTTP 400)" in str(error)
    assert rejection_message(b"upstream connect error") == ("upstream connect error", [])


@pytest.mark.parametrize("text,version", [("kind v0.29.0 go1.24.2 linux/amd64", (0, 29, 0)),
                                          ("v1.32.4-dispatcher", (1, 32, 4)), ("v3.16.3+gcfd0749", (3, 16, 3)),
                                          ("no version here", None)])
def test_parse_version(text, version):
    assert preflight.parse_version(text) == version
