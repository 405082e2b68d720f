"""`up --backend kind --dry-run [--out DIR]`: the full plan, run as a user would, with no tool on PATH.

The dry run must need none of docker/kind/kubectl/helm (PATH holds nothing), print every command
and manifest in step order, and with --out write each manifest, the kind config, the Helm values
and the command list.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.backends.kind.pins import pins

REPO = Path(__file__).resolve().parent.parent
PINS = pins()
EXPECTED_STEPS = [
    "preflight", "model artifact", "detectors", "kind cluster", "pre-load images",
    *[f"helm {c.release} {c.version}" for c in PINS.charts],
    "wait for CRDs, webhooks and controllers", "namespace and model volume", "detector service", "deploy platforms",
    "wait for readiness", "prediction parity", "Prometheus scrapes each platform", "finish",
]
PLATFORM_OBJECTS = {
    "kserve": ("InferenceService", "testbed-kserve-nodeport", "testbed-kserve"),
    "seldon": ("SeldonDeployment", "testbed-seldon-nodeport", "testbed-seldon"),
    "rayserve": ("RayService", "testbed-rayserve-nodeport", "testbed-rayserve"),
}


def dry_run(tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    state, out, empty = tmp / "state", tmp / "plan", tmp / "empty-path"
    empty.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TESTBED_STATE_DIR": str(state), "PATH": str(empty)}
    proc = subprocess.run([sys.executable, "-m", "testbed", "up", "--backend", "kind", "--dry-run", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"dry run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc, state, out


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kind-dry-run")
    proc, state, out = dry_run(tmp, "--out", str(tmp / "plan"))
    return proc, state, out


def test_steps_run_in_order(plan):
    proc, _, _ = plan
    started = re.findall(r"^\[\d+/(\d+)\] (.+) \.\.\.$", proc.stderr, flags=re.M)
    assert [name for _, name in started] == EXPECTED_STEPS
    assert {total for total, _ in started} == {str(len(EXPECTED_STEPS))}
    assert re.findall(r"^## (.+)$", proc.stdout, flags=re.M) == EXPECTED_STEPS


def test_commands_create_the_pinned_cluster_then_install_every_chart_in_order(plan):
    proc, state, _ = plan
    commands = re.findall(r"^\$ (.+)$", proc.stdout, flags=re.M)
    create = commands[0]
    assert create.startswith("kind create cluster --name testbed ")
    assert f"--image {PINS.node_image}" in create
    assert f"--kubeconfig {state / 'kind' / 'kubeconfig'}" in create  # never the user's ~/.kube/config
    helm = commands[1:]
    assert len(helm) == len(PINS.charts)
    for command, chart in zip(helm, PINS.charts):
        assert command.startswith(f"helm upgrade --install {chart.release} {chart.chart} ")
        assert f"--version {chart.version} " in command and f"--namespace {chart.namespace} " in command
        assert f"--values {chart.values}" in command and "--wait" in command
        for key, value in chart.set.items():
            assert f"--set-string {key}={value}" in command


def test_every_manifest_is_printed_and_written(plan):
    proc, _, out = plan
    printed = re.findall(r"^--- apply (\S+) (\S+)$", proc.stdout, flags=re.M)
    files = sorted((out / "manifests").glob("*.yaml"))
    written = [yaml.safe_load(f.read_text()) for f in files]
    assert len(files) == len(printed) == 3 + 3 + 3 * len(PLATFORM_OBJECTS)
    ids = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in written]
    assert ids[:3] == [("Namespace", None, "testbed"), ("PersistentVolume", None, "testbed-artifacts-testbed"),
                       ("PersistentVolumeClaim", "testbed", "testbed-artifacts")]
    # The detector service before the platforms that send to it (tests/test_kind_detection.py checks it in full).
    assert ids[3:6] == [("Deployment", "testbed", "detector-service"), ("Service", "testbed", "detector-service"),
                        ("PodMonitor", "testbed", "detector-service")]
    for cr_kind, service, monitor in PLATFORM_OBJECTS.values():
        assert (cr_kind, "testbed", "reference-classifier") in ids
        assert ("Service", "testbed", service) in ids
        assert ("PodMonitor", "testbed", monitor) in ids
    # Files are numbered in apply order, which is the printed order.
    assert [f"{o['kind']} {o['metadata'].get('namespace') + '/' if o['metadata'].get('namespace') else ''}"
            f"{o['metadata']['name']}" for o in written] == [f"{k} {w}" for k, w in printed]


def test_custom_resources_load_the_artifact_from_the_volume(plan):
    _, state, out = plan
    artifact_dirs = [p.name for p in (state / "artifacts").glob("reference-classifier-*")]
    assert len(artifact_dirs) == 1
    by_kind = {yaml.safe_load(f.read_text())["kind"]: yaml.safe_load(f.read_text())
               for f in (out / "manifests").glob("*.yaml")}
    isvc = by_kind["InferenceService"]["spec"]["predictor"]["model"]
    assert isvc["storageUri"] == f"pvc://testbed-artifacts/{artifact_dirs[0]}"
    assert isvc["protocolVersion"] == "v2" and isvc["modelFormat"]["name"] == "sklearn"
    graph = by_kind["SeldonDeployment"]["spec"]["predictors"][0]["graph"]
    assert by_kind["SeldonDeployment"]["spec"]["protocol"] == "v2"
    assert (graph["implementation"], graph["modelUri"]) == ("SKLEARN_SERVER", f"pvc://testbed-artifacts/{artifact_dirs[0]}")
    serve = yaml.safe_load(by_kind["RayService"]["spec"]["serveConfigV2"])["applications"][0]
    assert serve["import_path"] == "ray_app:build_app"
    assert serve["args"] == {"artifact_dir": f"/mnt/testbed/{artifact_dirs[0]}", "model_name": "reference-classifier"}


def test_out_writes_kind_config_values_and_commands(plan):
    proc, state, out = plan
    config = yaml.safe_load((out / "kind-config.yaml").read_text())
    mount = config["nodes"][0]["extraMounts"][0]
    assert mount["hostPath"] == str((state / "artifacts").resolve()) and mount["readOnly"] is True
    assert {m["listenAddress"] for m in config["nodes"][0]["extraPortMappings"]} == {"127.0.0.1"}
    for chart in PINS.charts:
        assert (out / "helm" / f"{chart.release}.values.yaml").read_text() == chart.values.read_text()
    script = (out / "commands.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash")
    assert [line for line in script.splitlines() if not line.startswith("#") and line != "set -euo pipefail"] == \
        re.findall(r"^\$ (.+)$", proc.stdout, flags=re.M)
    assert f"wrote {len(list(out.rglob('*.*')))} files under {out}" in proc.stdout


def test_dry_run_touches_no_cluster_and_no_tool(plan):
    proc, state, _ = plan
    # PATH was empty: nothing could be executed. Nothing a real run writes for the cluster exists.
    assert not (state / "kind" / "kubeconfig").exists()
    assert not (state / "kind" / "state.json").exists()
    assert not (state / "kind" / "kind-config.yaml").exists()
    assert "nothing was run" in proc.stdout
    assert "kind: NOT FOUND on PATH" in proc.stdout and "helm: NOT FOUND on PATH" in proc.stdout


def test_dry_run_validates_custom_resources_offline(plan):
    proc, _, _ = plan
    for cr_kind in ("InferenceService", "SeldonDeployment", "RayService"):
        assert re.search(rf"^# {cr_kind} testbed/reference-classifier: valid against \S+", proc.stdout, flags=re.M)


def test_platform_subset_renders_only_that_platform(tmp_path):
    proc, _, _ = dry_run(tmp_path, "--platforms", "seldon")
    kinds = re.findall(r"^--- apply (\S+) ", proc.stdout, flags=re.M)
    assert "SeldonDeployment" in kinds and "InferenceService" not in kinds and "RayService" not in kinds
    assert 'up{job="seldon",namespace="testbed"}' in proc.stdout and 'job="kserve"' not in proc.stdout


def test_plan_shows_what_each_podmonitor_scrapes_next_to_the_ports_the_pods_declare(plan):
    proc, _, out = plan
    monitors = [yaml.safe_load(f.read_text()) for f in sorted((out / "manifests").glob("*-podmonitor-*.yaml"))]
    assert len(monitors) == len(PLATFORM_OBJECTS) + 1  # the detector service's too
    for monitor in monitors:
        where = f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
        n = len(monitor["spec"]["podMetricsEndpoints"])
        block = re.search(rf"^((?:# PodMonitor {re.escape(where)} endpoint \d+ .*\n){{{n}}})"
                          rf"#   the pods it selects will declare: (.+)$", proc.stdout, flags=re.M)
        assert block, f"no scrape plan for PodMonitor {where}"
        assert "NOTHING" not in block.group(1)
    text = proc.stdout
    assert re.search(r"^# PodMonitor testbed/testbed-kserve endpoint 0 \(port http1\): scrapes kserve-container "
                     r"<pod IP>:8080/metrics$", text, re.M)
    assert re.search(r"^#   the pods it selects will declare: InferenceService predictor pod: kserve-container "
                     r"\[http1:8080\], agent \[agent-port:9081\]$", text, re.M)
    assert re.search(r"^# PodMonitor testbed/testbed-seldon endpoint 1 \(port http\): scrapes reference-classifier "
                     r"<pod IP>:6000/prometheus$", text, re.M)
    assert re.search(r"reference-classifier \[grpc:9500, http:9000\], seldon-container-engine "
                     r"\[http:8000, metrics:8000, grpc:5001\]$", text, re.M)
    # The scrape step then waits for as many `up` series as targets: Seldon's pod has two.
    assert 'up{job="seldon",namespace="testbed"} == 1 on 2 target(s)' in text
