"""The experiment as a Kubeflow pipeline: it compiles, the YAML validates against kfp's own IR
(PipelineSpec protobuf, strict) and loader, and a short local run with kfp.local passes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2

from testbed.pipeline import PIPELINE_NAME, compile_pipeline

REPO = Path(__file__).resolve().parent.parent


def test_pipeline_compiles_and_validates(tmp_path):
    out = compile_pipeline(tmp_path / "pipeline.yaml")
    doc = yaml.safe_load(out.read_text())
    # Strict parse into the IR message: unknown fields or wrong types raise.
    spec = json_format.ParseDict(doc, pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == PIPELINE_NAME
    tasks = spec.root.dag.tasks
    assert set(tasks) == {"prepare-artifact", "deploy", "probe", "report", "teardown"}
    assert list(tasks["deploy"].dependent_tasks) == ["prepare-artifact"]
    assert list(tasks["probe"].dependent_tasks) == ["deploy"]
    assert list(tasks["report"].dependent_tasks) == ["probe"]
    assert set(tasks["teardown"].dependent_tasks) == {"deploy", "report"}
    assert set(spec.root.input_definitions.parameters) == {"backend", "platforms", "experiments", "repeats", "seed",
                                                           "artifact_seed", "run_id"}
    assert spec.components["comp-report"].output_definitions.artifacts["report_html"].artifact_type.schema_title \
        == "system.HTML"
    assert components.load_component_from_file(str(out)).name == PIPELINE_NAME


def test_pipeline_compile_verb(tmp_path):
    out = tmp_path / "p.yaml"
    proc = subprocess.run([sys.executable, "-m", "testbed", "pipeline", "compile", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text())["pipelineInfo"]["name"] == PIPELINE_NAME


@pytest.mark.integration
def test_pipeline_runs_locally(testbed_up, tmp_path):
    """prepare-artifact -> deploy (finds the session's testbed up) -> probe -> report -> teardown (leaves it up)."""
    env = {**os.environ, "TESTBED_RESULTS_DIR": str(tmp_path / "results")}
    proc = subprocess.run([sys.executable, "-m", "testbed", "pipeline", "run-local", "--pipeline-root",
                           str(tmp_path / "kfp"), "--platforms", ",".join(testbed_up["platforms"])], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = [p for p in (tmp_path / "results").iterdir() if p.name.startswith("pipeline-")]
    assert len(runs) == 1
    meta = json.loads((runs[0] / "run.json").read_text())
    assert meta["state"] == "complete" and meta["artifact"]["sha256"] == testbed_up["model"]["sha256"]
    verdicts = {json.loads(p.read_text())["platform"]: json.loads(p.read_text())["scores"]["verified"]
                for p in (runs[0] / "pipeline").glob("*.json")}
    assert verdicts == {p: 1.0 for p in testbed_up["platforms"]}
    md = (tmp_path / "results" / f"report-{runs[0].name}" / "report.md").read_text()
    assert "pipeline verified 1 (n=1)" in md
