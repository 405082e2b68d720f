"""The experiment as a Kubeflow pipeline (kfp v2): prepare-artifact -> deploy -> probe -> report
(-> teardown). A model flows from training to a verified deployment: the CI/CD criterion made concrete.

`python -m testbed pipeline compile [--out FILE]` writes the IR YAML that Kubeflow Pipelines accepts;
`python -m testbed pipeline run-local` runs the same pipeline here with kfp.local's SubprocessRunner
against the local backend. Components are lightweight Python components whose bodies call the
testbed's own code (the lifecycle functions, the harness, the report), so the pipeline adds no second
implementation of anything. In a cluster they run in an image with this repository installed
(TESTBED_PIPELINE_IMAGE; the components import `testbed`), with the kind backend.
"""

# No `from __future__ import annotations`: kfp reads the component signatures as real types.

import os
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl

from deployers import default_platforms

IMAGE = os.environ.get("TESTBED_PIPELINE_IMAGE", "localhost/ml-deployment-testbed:0.1.0")
PIPELINE_NAME = "testbed-verified-deployment"
DEFAULT_PLATFORMS = ",".join(default_platforms())
"""The pipeline parameter's default (kfp needs a literal): the registry's default platforms."""


# Component bodies run in another process (and, on Kubeflow, another machine): imports live inside.
@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_artifact(artifact_seed: int) -> NamedTuple("Artifact", [("sha256", str), ("name", str)]):
    """Train (or reuse) the reference model artifact, verified by sha256."""
    from collections import namedtuple

    from testbed import artifact
    from testbed.settings import Settings

    art = artifact.ensure(Settings().artifacts_dir, artifact_seed)
    print(f"artifact {art.name} sha256 {art.sha256} at {art.path}")
    return namedtuple("Artifact", ["sha256", "name"])(art.sha256, art.name)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(backend: str, platforms: str, artifact_sha256: str) -> NamedTuple("Deployment", [("started_here", bool),
                                                                                            ("endpoints", str)]):
    """Bring the testbed up (testbed.lifecycle, as `python -m testbed up` does), or find it up, and check
    it serves the artifact."""
    import json
    from collections import namedtuple
    from dataclasses import replace

    from deployers import parse_platforms
    from testbed.lifecycle import ensure_up
    from testbed.settings import Settings

    settings = replace(Settings(backend=backend), platforms=parse_platforms(platforms, backend))
    status, started_here = ensure_up(settings)
    served = (status.get("model") or {}).get("sha256")
    if served != artifact_sha256:
        raise RuntimeError(f"the {backend} testbed serves artifact {served}, the pipeline prepared "
                           f"{artifact_sha256}: run `python -m testbed down` and run the pipeline again")
    endpoints = {p: status["platforms"][p]["infer_url"] for p in settings.platforms}
    print(json.dumps(endpoints, indent=2))
    return namedtuple("Deployment", ["started_here", "endpoints"])(started_here, json.dumps(endpoints))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def probe(backend: str, platforms: str, experiments: str, repeats: int, seed: int, run_id: str,
          endpoints: str) -> str:
    """Run the experiments (default: the pipeline's verification) with repeats; returns the run id."""
    import argparse

    from testbed.experiment import load_spec, run_experiments
    from testbed.results import new_run_id

    print(f"probing {endpoints}")
    rid = run_id or new_run_id("pipeline")
    specs = [load_spec(name.strip()) for name in experiments.split(",") if name.strip()]
    args = argparse.Namespace(backend=backend, platforms=platforms, repeats=repeats, seed=seed, resume=None,
                              run_id=rid, results_dir=None, keep_up=True)
    code = run_experiments(specs, args)
    if code != 0:
        raise RuntimeError(f"experiments {experiments} on run {rid} did not all finish (exit {code}); resume "
                           f"with `python experiments/<name>.py --resume {rid}`")
    return rid


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def report(run_id: str, report_html: dsl.Output[dsl.HTML]) -> str:
    """Render the run's report; the HTML is also the step's output artifact (shown in the KFP UI)."""
    import shutil

    from testbed import report as report_mod
    from testbed import results

    built = report_mod.build(results.RESULTS_DIR, [run_id], results.RESULTS_DIR / f"report-{run_id}")
    shutil.copyfile(built["html"], report_html.path)
    cells = built["report"].matrices[0].rows
    verified = {system["id"]: cells_["cicd"].lines[0] for system, cells_ in cells if cells_["cicd"].kind == "measured"}
    print(verified)
    return str(built["markdown"])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def teardown(backend: str, started_here: bool, report_path: str) -> str:
    """Stop the testbed if this pipeline started it."""
    from testbed import lifecycle
    from testbed.settings import Settings

    if not started_here:
        return f"left running (it was up before the pipeline); report at {report_path}"
    lifecycle.down(Settings(backend=backend))
    return f"stopped; report at {report_path}"


@dsl.pipeline(name=PIPELINE_NAME, description="Train the reference model, deploy it on every platform, verify "
              "it answers like the in-process model, and report.")
def testbed_pipeline(backend: str = "local", platforms: str = DEFAULT_PLATFORMS,
                     experiments: str = "pipeline_verify", repeats: int = 1, seed: int = 20261125,
                     artifact_seed: int = 20261125, run_id: str = ""):
    art = prepare_artifact(artifact_seed=artifact_seed).set_display_name("prepare-artifact")
    dep = deploy(backend=backend, platforms=platforms, artifact_sha256=art.outputs["sha256"])
    dep.set_display_name("deploy")
    run = probe(backend=backend, platforms=platforms, experiments=experiments, repeats=repeats, seed=seed,
                run_id=run_id, endpoints=dep.outputs["endpoints"]).set_display_name("probe")
    rep = report(run_id=run.output).set_display_name("report")
    teardown(backend=backend, started_here=dep.outputs["started_here"], report_path=rep.outputs["Output"]) \
        .set_display_name("teardown")
    for task in (art, dep, run, rep):
        task.set_caching_options(False)  # every step acts on live state; nothing is safe to cache


def compile_pipeline(out) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(testbed_pipeline, package_path=str(out))
    return out


def run_local(args) -> int:
    """Run the pipeline with kfp.local's SubprocessRunner in this environment (it has kfp and the testbed)."""
    from kfp import local

    from testbed.settings import Settings

    root = Path(args.pipeline_root) if args.pipeline_root else Settings().state_dir / "kfp-local"
    if args.results_dir:
        os.environ["TESTBED_RESULTS_DIR"] = str(Path(args.results_dir).resolve())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    task = testbed_pipeline(backend="local", platforms=args.platforms or DEFAULT_PLATFORMS,
                            repeats=args.repeats, seed=args.seed)
    print(f"pipeline {PIPELINE_NAME} finished: {task.output if hasattr(task, 'output') else 'ok'}")
    return 0
