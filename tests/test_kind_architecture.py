"""The kind node's CPU architecture against every image the plan pulls (issue 11, item 4).

The architecture data (cluster/versions.yaml `architectures`) was read from each project's release
build at the pinned tag; these tests hold the code to it: arm tags where they exist, a refusal that
names the images and the fix where they do not, and only the pieces of the selected platforms.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.backends.kind import preflight
from testbed.backends.kind.pins import pins

REPO = Path(__file__).resolve().parent.parent
PINS = pins()
ARCH_VAR = "TESTBED_KIND_ARCH"
SELDON_IMAGES = ["docker.io/seldonio/seldon-core-operator:1.18.2", "docker.io/seldonio/seldon-core-executor:1.18.2",
                 "seldonio/rclone-storage-initializer:1.18.2", "seldonio/mlserver:1.7.1-sklearn"]


def test_every_image_says_how_its_arm64_build_was_checked():
    assert set(PINS.architectures) == set(PINS.images())
    for image, entry in PINS.architectures.items():
        assert entry.get("arm64") and len(entry.get("checked", "")) > 40, image
        assert entry["arm64"] in ("same", "none") or entry["arm64"].startswith(image.rsplit(":", 1)[0] + ":"), image


def test_arm64_pulls_rays_aarch64_tag_and_the_same_multi_arch_tags_elsewhere():
    arm = PINS.images("arm64", ("kserve", "rayserve"))
    assert "rayproject/ray:2.52.0-aarch64" in arm and "rayproject/ray:2.52.0" not in arm
    assert PINS.serving_for("rayserve", "arm64")["image"] == "rayproject/ray:2.52.0-aarch64"
    assert PINS.serving_for("rayserve", "amd64")["image"] == "rayproject/ray:2.52.0"
    assert {"kserve/sklearnserver:v0.20.0", "kserve/agent:v0.20.0", "python:3.11.14-slim"} <= set(arm)
    assert not set(SELDON_IMAGES) & set(arm)
    assert PINS.images("amd64") == PINS.images()


def test_arm64_refuses_seldon_naming_its_images_and_the_way_out():
    from testbed.errors import ArchitectureUnsupported

    with pytest.raises(ArchitectureUnsupported) as info:
        PINS.images("arm64")
    assert info.value.missing == {"seldon": SELDON_IMAGES}
    assert "--platforms kserve,rayserve" in str(info.value) and "amd64 machine" in str(info.value)
    with pytest.raises(ArchitectureUnsupported, match="records amd64 and arm64 builds only"):
        PINS.images("s390x", ("kserve",))


def test_a_platform_left_out_installs_nothing_of_its_own():
    parts = PINS.platform_parts
    assert set(parts) == set(PINS.serving)
    releases = {c.release for c in PINS.charts}
    for name, part in parts.items():
        assert set(part["charts"]) <= releases and set(part["crds"]) <= set(PINS.crds), name
        assert set(part["namespaces"]) <= set(PINS.controller_namespaces) and part["images"] in PINS.images_by_source
        others = tuple(p for p in parts if p != name)
        assert not {c.release for c in PINS.charts_for(others)} & set(part["charts"])
        assert not set(PINS.crds_for(others)) & set(part["crds"])
        assert not set(PINS.controller_namespaces_for(others)) & set(part["namespaces"])
        assert part["images"] not in PINS.image_groups(others)
    assert PINS.charts_for(tuple(parts)) == PINS.charts and PINS.crds_for(None) == PINS.crds
    shared = [c.release for c in PINS.charts_for(())]
    assert shared == ["cert-manager", "kube-prometheus-stack"]


def test_preflight_reports_the_architecture_with_every_other_problem(monkeypatch):
    monkeypatch.delenv(ARCH_VAR, raising=False)
    report = preflight.Report(docker_arch="arm64")
    preflight._check_architecture(PINS, None, report)
    assert len(report.problems) == 1 and report.problems[0].startswith("architecture: The kind node runs arm64")
    assert "seldonio/mlserver:1.7.1-sklearn" in report.problems[0]
    report = preflight.Report(docker_arch="arm64")
    preflight._check_architecture(PINS, ("kserve", "rayserve"), report)
    assert report.problems == []
    monkeypatch.setenv(ARCH_VAR, "amd64")
    preflight._check_architecture(PINS, ("kserve",), report)
    assert report.problems and "the Docker engine (so the kind node) runs arm64" in report.problems[0]


@pytest.mark.parametrize("spelling,arch", [("x86_64", "amd64"), ("AMD64", "amd64"), ("aarch64", "arm64"),
                                           ("arm64", "arm64"), ("s390x", "s390x")])
def test_architecture_spellings(spelling, arch):
    from testbed.backends.kind import architecture

    assert architecture.ENV_VAR == ARCH_VAR
    assert architecture.normalize(spelling) == arch


def test_nodes_must_run_the_architecture_the_images_were_chosen_for():
    from testbed.backends.kind import architecture

    assert architecture.nodes_problem({"testbed-control-plane": "arm64"}, "arm64") is None
    assert "kwok-node-1 (amd64)" in architecture.nodes_problem({"a": "arm64", "kwok-node-1": "amd64"}, "arm64")
    assert architecture.nodes_problem({}, "amd64") == "the API server lists no Node"


def run_cli(tmp_path: Path, *args: str, arch: str) -> subprocess.CompletedProcess:
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "TESTBED_STATE_DIR": str(tmp_path / "state"), "PATH": str(empty),
           ARCH_VAR: arch}
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_arm64_dry_run_refuses_seldon_before_anything_else(tmp_path):
    proc = run_cli(tmp_path, "up", "--backend", "kind", "--dry-run", arch="arm64")
    assert proc.returncode == 2
    assert "[1/" in proc.stderr and "preflight: FAILED" in proc.stderr
    assert "these images have no arm64 build" in proc.stderr and "seldonio/mlserver:1.7.1-sklearn" in proc.stderr


def test_arm64_dry_run_of_the_other_platforms_plans_arm_images_and_no_seldon(tmp_path):
    proc = run_cli(tmp_path, "up", "--backend", "kind", "--dry-run", "--platforms", "kserve,rayserve",
                   "--out", str(tmp_path / "plan"), arch="arm64")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# node architecture: arm64, from $TESTBED_KIND_ARCH" in proc.stdout
    assert "helm seldon-core" not in proc.stdout and "seldondeployments" not in proc.stdout
    assert "kind load docker-image rayproject/ray:2.52.0-aarch64" in proc.stdout
    manifests = [yaml.safe_load(f.read_text()) for f in (tmp_path / "plan" / "manifests").glob("*.yaml")]
    images = {c["image"] for m in manifests for c in _containers(m)}
    assert "rayproject/ray:2.52.0-aarch64" in images and "rayproject/ray:2.52.0" not in images
    assert images <= set(PINS.images("arm64", ("kserve", "rayserve")))
    assert re.search(r"^~ wait: CRDs Established: .*rayservices\.ray\.io$", proc.stdout, re.M)


def _containers(obj):
    if isinstance(obj, dict):
        if isinstance(obj.get("image"), str):
            yield obj
        for v in obj.values():
            yield from _containers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _containers(v)


def test_images_verb_lists_the_arm_tags_or_names_what_has_none(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "testbed", "images", "--arch", "arm64", "--platforms",
                           "kserve,rayserve"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == PINS.images("arm64", ("kserve", "rayserve"))
    proc = subprocess.run([sys.executable, "-m", "testbed", "images", "--arch", "arm64"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "seldonio/seldon-core-operator:1.18.2" in proc.stderr
