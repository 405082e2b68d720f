"""A platform is one module (deployers/<name>.py exporting PLATFORM).

Two halves, both checked here without starting a runtime:
- no table keyed by a platform's name outside deployers/: testbed/, probes/ and experiments/ hold no
  string literal that is a platform's (or a studied system's) name;
- everything else asks the platform: a throwaway platform registered by these tests (never by the
  product) declares values no real platform has, and each probe, experiment, fault, the report and
  the registry's own questions answer with exactly those. Parity and robustness run for real against
  the throwaway platform's server (a small V2 server of this test's own, serving the real artifact).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import io
import json
import sys
import threading
import tokenize
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

import deployers
from deployers import PLATFORMS, default_platforms, get_platform, offered_on, parse_platforms
from testbed import artifact as artifact_mod
from testbed.backends.kind.deployment import KindDeployment
from testbed.backends.local import processes
from testbed.backends.local.deployment import LocalProcess
from testbed.backends.local.envs import EnvSpec
from testbed.endpoint import DETECTION_LABELS, Endpoint
from testbed.errors import FaultTargetMissing, UnknownPlatform
from testbed.errors import TestbedError as PlatformError
from testbed.faults import KillTarget
from testbed.platforms import (ALL, V2_WHERE, BatchingRun, BatchingSupport, Documented, DocumentedRow,
                               ExplainPath, MetricsCatalogue, Platform, Signal, UserFile, WireProtocol)
from testbed.settings import REPO_ROOT, Settings

SCANNED = ("testbed", "probes", "experiments")
DOCUMENTED_YAML = REPO_ROOT / "testbed" / "report" / "documented.yaml"


def system_names() -> set[str]:
    """Every registered platform and every system of the study (documented.yaml ids)."""
    documented = yaml.safe_load(DOCUMENTED_YAML.read_text())
    return set(PLATFORMS) | {s["id"] for s in documented["systems"]}


def name_literals(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every string literal whose value is exactly one of the names: a dict key, a
    comparison, a subscript or a default that would make a table keyed by a platform's name."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):  # f-strings
                continue
            if isinstance(value, str) and value in names:
                found.append((tok.start[0], value))
    return found


# --- no table keyed by a platform's name ------------------------------------------------------------
def test_no_platform_name_outside_deployers():
    names = system_names()
    offenders = [f"{path.relative_to(REPO_ROOT)}:{line}: {name!r}"
                 for top in SCANNED for path in sorted((REPO_ROOT / top).rglob("*.py"))
                 for line, name in name_literals(path.read_text(), names)]
    assert not offenders, ("platform names used as literals outside deployers/ (a table keyed by a platform's "
                           "name, or a branch on one): ask deployers.get_platform(name) for the fact instead, and "
                           "put the fact in the platform's module:\n" + "\n".join(offenders))


def test_the_name_check_finds_tables_and_branches():
    source = ('TABLE = {"kserve": 1}\nif platform == "seldon":\n    pass\nx = d["rayserve"]\n'
              '"""A docstring naming kserve is fine."""\nf = f"{platform}-x"\n')
    assert name_literals(source, {"kserve", "seldon", "rayserve"}) == [(1, "kserve"), (2, "seldon"), (4, "rayserve")]


def test_documented_yaml_holds_no_measured_platform(tmp_path):
    from testbed.report import load_documented

    systems = load_documented()["systems"]
    assert [s["id"] for s in systems[:len(PLATFORMS)]] == list(PLATFORMS)  # the modules' rows, registry order
    assert all(s.get("measured_platform") == s["id"] for s in systems[:len(PLATFORMS)])
    data = yaml.safe_load(DOCUMENTED_YAML.read_text())
    data["systems"].append({"id": "kserve", "name": "KServe", "cells": {}})
    stale = tmp_path / "documented.yaml"
    stale.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"PLATFORM.documented"):
        load_documented(stale)


# --- every registered platform is complete ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_every_platform_describes_itself(name):
    from probes import monitoring

    p = get_platform(name)
    assert p.name == name and p.offered_on("local")
    local = p.deployments["local"]
    assert issubclass(local, LocalProcess) and local.platform == name and local.env.requirements
    assert local.detection_label in DETECTION_LABELS
    if p.offered_on("kind"):
        kind = p.deployments["kind"]
        assert issubclass(kind, KindDeployment) and kind.platform == name and kind.recreated_by
        assert kind.detection_label in DETECTION_LABELS
    assert p.protocol.where in V2_WHERE and p.protocol.validation in ("native", "user code")
    if p.metrics is not None:
        assert set(p.metrics.signals) == set(monitoring.SIGNALS)
    if p.explain is not None:
        assert p.explain.mechanism in ("native", "user code") and p.explain.route
    assert p.batching.mechanism in ("native", "user code", "none") and p.batching.detail
    assert p.batching.offline in ("native", "none") and (p.batching.offline == "none") == (p.batching.offline_job is None)
    assert p.user_files and all(f.kind in ("code", "config") for f in p.user_files)
    if p.documented is not None:
        from testbed.report.criteria import CRITERIA

        assert set(p.documented.cells) <= {c.key for c in CRITERIA}
        assert all(c.sources for c in p.documented.cells.values())


# --- a throwaway platform: everything asks it -----------------------------------------------------
TOY = "toyserve"


class ToyLocal(LocalProcess):
    platform = TOY
    env = EnvSpec("toyserve", ("numpy==1.26.4",))
    worker_pattern = f"{sys.executable} -c import time"
    """This test's own sleeping process below: the kill fault must find it by this pattern."""

    detection_label = "user code"


class ToyKind(KindDeployment):
    platform = TOY
    recreated_by = "the toy operator (throwaway platform of tests/test_platform_registry.py)"


batching_runs: list[BatchingRun] = []


def toy_evidence(run: BatchingRun) -> dict:
    batching_runs.append(run)
    return {"toy": run.requests_ok}


TOY_PLATFORM = Platform(
    name=TOY,
    display_name="Toy Serve",
    deployments={"local": ToyLocal},
    protocol=WireProtocol(where="user code", validation="user code", validation_note="toy: validated by the test's server"),
    metrics=MetricsCatalogue(signals={"requests_total": Signal('sum(toy_requests{platform="$platform"})', ALL,
                                                               "toy counter")},
                             export_lag_s=3.5),
    explain=ExplainPath(request="v2", response="alibi-json", mechanism="user code", route="toy explain route"),
    batching=BatchingSupport(mechanism="user code", detail="toy batcher", evidence=toy_evidence),
    user_files=(UserFile("config", "run:toyserve/{model}.yaml"),),
    documented=DocumentedRow("Toy Serve", {"formats": Documented("toy formats", ("https://example.invalid/toy",))}),
    default=False,
)


@pytest.fixture
def toy(monkeypatch):
    """TOY_PLATFORM registered for one test (as its line in deployers/__init__.py would)."""
    monkeypatch.setitem(deployers.PLATFORMS, TOY, TOY_PLATFORM)
    batching_runs.clear()
    return TOY_PLATFORM


def test_registry_questions_answer_for_the_throwaway_platform(toy, monkeypatch):
    assert get_platform(TOY) is toy
    assert TOY not in default_platforms() and TOY not in Settings().platforms  # default=False
    assert parse_platforms("all")[-1] == TOY and parse_platforms(f"kserve,{TOY}") == ("kserve", TOY)
    assert TOY in offered_on("local") and TOY not in offered_on("kind")
    with pytest.raises(UnknownPlatform, match=r"kind backend does not offer platform 'toyserve'"):
        parse_platforms(TOY, "kind")
    assert TOY not in parse_platforms("all", "kind")
    with pytest.raises(PlatformError, match="no implementation for the 'kind' backend"):
        toy.deployment_for("kind")
    # A default platform without a kind deployment: started locally, left out on kind.
    monkeypatch.setitem(deployers.PLATFORMS, TOY, dataclasses.replace(toy, default=True))
    assert TOY in Settings().platforms and TOY not in Settings(backend="kind").platforms


def test_probes_read_the_throwaway_platform(toy, tmp_path):
    from probes import ease, explain, monitoring, robustness

    assert monitoring.catalogue_of(TOY) is toy.metrics
    scored = monitoring.score(monitoring.catalogue_of(TOY), {"requests_total": 1.0}, {"requests_total": 6.0},
                              monitoring.expected_counts(answered_ok=4, answered_failed=1))
    assert scored["signals"]["requests_total"]["exact"] and scored["scores"]["signals_exposed"] == 1
    assert explain.path_of(TOY).route == "toy explain route"
    assert robustness.validation_of(TOY) == ("user code", "toy: validated by the test's server")
    (tmp_path / TOY).mkdir()
    (tmp_path / TOY / "m.yaml").write_text("a: 1\n\nb: 2\n")
    lines, files = ease.count_user_lines(TOY, tmp_path, "m")
    assert lines == 2 and files == [{"file": str(tmp_path / TOY / "m.yaml"), "kind": "config", "lines": 2}]
    assert toy.ease_mechanism == "config"


def test_formats_ask_the_platform_for_its_server(toy):
    from deployers import formats

    with pytest.raises(ValueError, match="toyserve.*no format server"):
        formats.server_for(TOY)
    for name in PLATFORMS:
        if name != TOY:
            server = formats.server_for(name)
            assert isinstance(server, formats.FormatServer) and server.platform == name
            assert set(server.mechanism) == set(formats.FORMATS)


def test_performance_experiment_asks_the_platform(toy, tmp_path):
    spec = importlib.util.spec_from_file_location("performance_experiment", REPO_ROOT / "experiments" / "performance.py")
    perf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf)
    ep = Endpoint(platform=TOY, backend="local", base_url="http://127.0.0.1:9", model_name="m")
    art = type("Art", (), {"name": "m"})()
    settings = Settings(state_dir=tmp_path)
    assert perf.batching_evidence(TOY, ep, art, settings, before=("b",), requests=7) == {"toy": 7}
    [run] = batching_runs
    assert (run.workdir, run.model_name, run.before, run.endpoint) == (settings.run_dir / TOY, "m", ("b",), ep)
    # A platform without an evidence hook gives none (KServe has no batcher locally).
    assert perf.batching_evidence("kserve", ep, art, settings, before=None, requests=7) == {}


def test_the_kill_fault_asks_the_platform_what_to_kill(toy, tmp_path):
    from testbed.backends.local import faults

    pid = processes.start([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "log", cwd=tmp_path)
    try:
        info = {"pid": pid, "pid_start": processes.start_ticks(pid)}
        found, how = faults.serving_worker(TOY, info, "http://127.0.0.1:9")
        assert found == pid and "command line starts with" in how and "import time" in how
        with pytest.raises(FaultTargetMissing, match="listens on port"):  # KServe: no pattern, the port's process
            faults.serving_worker("kserve", info, "http://127.0.0.1:9")
        assert processes.alive(pid)  # found, never signalled
    finally:
        processes.stop_session(pid, grace_s=1)


def test_the_kind_fault_names_what_recreates_the_platform(toy, monkeypatch, tmp_path):
    from testbed.backends.kind.faults import KindFaults

    monkeypatch.setitem(deployers.PLATFORMS, TOY, dataclasses.replace(toy, deployments={"local": ToyLocal,
                                                                                      "kind": ToyKind}))
    out = io.StringIO()
    faults = KindFaults(Settings(backend="kind", state_dir=tmp_path), dry_run=True, out=out)
    assert faults.restore(KillTarget(TOY, "pods"), None) is None
    assert "no restore by the testbed: the toy operator (throwaway platform" in out.getvalue()


def test_the_report_shows_the_platforms_documented_row(toy):
    from testbed.report import build_matrix, load_documented

    documented = load_documented()
    ids = [s["id"] for s in documented["systems"]]
    assert ids.index(TOY) == len(PLATFORMS) - 1  # after the other registered platforms, before documented.yaml's
    matrix = build_matrix(documented, [], None)
    cells = {system["id"]: cells for system, cells in matrix.rows}[TOY]
    assert cells["formats"].kind == "documented" and cells["formats"].lines[0].startswith("toy formats")
    assert cells["formats"].sources == ["https://example.invalid/toy"]


# --- parity and robustness, for real, on the throwaway platform's own server ------------------------------
@pytest.fixture(scope="module")
def served_artifact(tmp_path_factory):
    """The real artifact behind a minimal V2 server (the throwaway platform's 'runtime', user code)."""
    art = artifact_mod.ensure(tmp_path_factory.mktemp("artifacts"), seed=7)
    model = art.load_model()
    n_features = len(art.feature_names)

    class V2(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            ok = self.path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{art.name}/ready")
            self._send(200 if ok else 404, {})

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path != f"/v2/models/{art.name}/infer":
                return self._send(404, {"error": "unknown model"})
            try:
                tensor = json.loads(raw)["inputs"][0]
                rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
                if rows.ndim != 2 or rows.shape[1] != n_features or not len(rows):
                    raise ValueError(f"shape {list(rows.shape)}")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return self._send(400, {"error": str(exc)})
            labels = model.predict(rows).tolist()
            self._send(200, {"outputs": [{"name": "label", "shape": [len(labels)], "datatype": "INT64",
                                          "data": labels}]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), V2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield art, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def toy_context(art, base_url: str, **options):
    from probes.context import ProbeContext
    from testbed.prometheus import PrometheusClient

    endpoint = Endpoint(platform=TOY, backend="local", base_url=base_url, model_name=art.name)
    return ProbeContext(endpoints={TOY: endpoint}, prometheus=PrometheusClient("http://127.0.0.1:9"), artifact=art,
                        backend="local", seed=3, run_id="registry-test", options=options)


def test_parity_and_robustness_label_what_the_platform_declares(toy, served_artifact):
    from probes import parity_probe, robustness

    art, base_url = served_artifact
    [parity] = parity_probe.run(toy_context(art, base_url))
    assert (parity.platform, parity.verdict, parity.mechanism) == (TOY, "pass", "user code")
    [robust] = robustness.run(toy_context(art, base_url, oversized_rows=50))
    assert robust.mechanism == "user code" and robust.evidence["validation"] == "toy: validated by the test's server"
    assert robust.scores["stayed_up"] and robust.scores["rejected_4xx"] >= 10
