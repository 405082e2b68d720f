"""Ease of deployment, measured: for one platform alone, `down` then `up`, and read from the backend's
own status timings the time to ready; count the lines of configuration (or code) a user writes for
that platform, from the actual files the testbed generates or uses; count the components installed
(distributions in the runtime's venv) and the processes it runs. run(ctx) -> one Result per platform.

This probe restarts the testbed (ExperimentSpec.restarts_testbed): the harness runs it after the
experiments that share the running testbed, and restores the testbed afterwards.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from deployers import get_platform
from testbed.results import Result
from testbed.settings import Settings

# What a user writes to serve the model on each platform (on the local backend) is in the platform's
# module: PLATFORM.user_files (testbed.platforms.UserFile), e.g. MLServer's JSON configuration files
# the testbed generates into the run directory, or a kserve.Model subclass.


def meaningful_lines(text: str, kind: str) -> int:
    """Non-blank lines; for code also without comments and docstrings (what a user has to write)."""
    if kind != "code":
        return sum(1 for line in text.splitlines() if line.strip())
    import ast
    import io
    import tokenize

    doc_lines = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                doc_lines.update(range(first.lineno, first.end_lineno + 1))
    code_lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(code_lines - doc_lines)


def count_user_lines(platform: str, run_dir: Path, model_name: str) -> tuple[int, list[dict]]:
    files, total = [], 0
    for user_file in get_platform(platform).user_files:
        kind, spec = user_file.kind, user_file.path
        path = run_dir / str(spec)[4:].format(model=model_name) if str(spec).startswith("run:") else Path(spec)
        n = meaningful_lines(path.read_text(), kind)
        total += n
        files.append({"file": str(path), "kind": kind, "lines": n})
    return total, files


def venv_distributions(env_dir: Path) -> int:
    return len(list(env_dir.glob("lib/python*/site-packages/*.dist-info")))


def run(ctx) -> list[Result]:
    from dataclasses import replace

    from testbed import lifecycle

    if ctx.backend != "local":
        raise RuntimeError("ease of deployment is measured on the local backend (kind: see `up --dry-run`)")
    settings = Settings(backend=ctx.backend)
    out = []
    for platform in ctx.endpoints:
        lifecycle.down(settings)
        started = time.time()
        t0 = time.monotonic()
        status = lifecycle.up(replace(settings, platforms=(platform,))).status
        up_wall = time.monotonic() - t0
        info = status["platforms"][platform]
        state = json.loads((settings.run_dir / "state.json").read_text())
        env_dir = Path(state["platforms"][platform]["env_dir"])
        lines, files = count_user_lines(platform, settings.run_dir, status["model"]["name"])
        timings = status.get("timings", {})
        components = venv_distributions(env_dir)
        out.append(Result(
            probe="ease", platform=platform, backend=ctx.backend, artifact_sha256=ctx.artifact.sha256,
            verdict="ready",
            scores={"ready_s": timings.get(f"ready:{platform}"), "up_wall_s": round(up_wall, 2),
                    "config_lines": lines, "components": components, "processes": info.get("processes"),
                    "rss_mb": info.get("rss_mb")},
            measurements={"timings": timings, "user_files": files},
            evidence={"how": "`down`, then `up --platforms <platform>` alone; ready_s is the backend's "
                             "ready:<platform> timing (process start to model ready route answering 200)",
                      "env": env_dir.name, "components": "distributions in the runtime's venv",
                      "versions": info.get("versions", {})},
            mechanism=get_platform(platform).ease_mechanism, started_at=started))
    return out
