"""The plan of `up --backend kind`: every command and manifest, recorded as the steps run.

Steps never call subprocess or the API server themselves; they go through a Plan. In a real run
the Plan executes each action as it records it; with `--dry-run` it only records and prints, so
the printed plan is exactly what a real run would do (for a fresh cluster). `write(out_dir)` saves
every manifest as YAML plus the command list.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from testbed.backends.kind.templates import object_id, to_yaml
from testbed.errors import CommandFailed

TAIL_LINES = 25


@dataclass(frozen=True)
class Action:
    step: str
    kind: str
    """command | manifest | file | wait | note | api"""

    text: str
    """The shell command, object id, file name, or description."""

    body: dict | str | None = None
    """The manifest (dict) or file content (str)."""


@dataclass
class Plan:
    dry_run: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)
    apply_fn: Callable[[dict], dict] | None = None
    """Applies one manifest in a real run (set once the cluster exists; see kube.Kube.apply)."""

    log: TextIO | None = None
    """In a real run, each command and applied object is echoed here (the user's progress view)."""

    actions: list[Action] = field(default_factory=list)
    step: str = ""

    def begin(self, step: str) -> None:
        self.step = step
        if self.dry_run:
            self._print(f"\n## {step}")

    # --- actions ---------------------------------------------------------------------------------
    def command(self, argv: list[str], *, timeout_s: float, hint: str = "", attempts: int = 1,
                record: bool = True) -> subprocess.CompletedProcess | None:
        """Run argv (real run) or print it (dry run). CommandFailed carries its last output."""
        line = shlex.join(argv)
        if record:
            self.actions.append(Action(self.step, "command", line))
        if self.dry_run:
            self._print(f"$ {line}")
            return None
        self._log(f"  $ {line}")
        for attempt in range(1, attempts + 1):
            proc = run(argv, timeout_s=timeout_s)
            if proc.returncode == 0:
                return proc
            if attempt < attempts:
                self._log(f"  attempt {attempt} of {attempts} failed; retrying in 10 s")
                time.sleep(10)
        raise CommandFailed(line, proc.returncode, tail_of(proc), hint)

    def apply(self, obj: dict) -> dict | None:
        self.actions.append(Action(self.step, "manifest", object_id(obj), obj))
        if self.dry_run:
            self._print(f"--- apply {object_id(obj)}\n{to_yaml(obj).rstrip()}")
            return None
        if self.apply_fn is None:
            raise RuntimeError("Plan.apply before the cluster's API client was set")
        self._log(f"  apply {object_id(obj)}")
        return self.apply_fn(obj)

    def file(self, name: str, content: str, path: Path | None = None) -> None:
        """A file the plan writes and commands use (kind config, values): shown in full."""
        self.actions.append(Action(self.step, "file", name, content))
        if self.dry_run:
            self._print(f"--- file {name}" + (f" ({path})" if path else "") + f"\n{content.rstrip()}")
        elif path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    def wait(self, description: str, fn: Callable[[], object] | None = None):
        self.actions.append(Action(self.step, "wait", description))
        if self.dry_run:
            self._print(f"~ wait: {description}")
            return None
        return fn() if fn is not None else None

    def call(self, description: str, fn: Callable[[], object]):
        """An API call that is not an apply (delete pods, scale a Deployment): the text says what
        `kubectl` would do; the kubernetes client does it in a real run."""
        self.actions.append(Action(self.step, "api", description))
        if self.dry_run:
            self._print(f"> {description}")
            return None
        self._log(f"  {description}")
        return fn()

    def progress(self, text: str) -> None:
        """A line of a real run's progress view (retries, waits); nothing in a dry run."""
        if not self.dry_run:
            self._log(text)

    def note(self, text: str) -> None:
        self.actions.append(Action(self.step, "note", text))
        if self.dry_run:
            self._print(f"# {text}")

    # --- views ---------------------------------------------------------------------------------
    def manifests(self) -> list[dict]:
        return [a.body for a in self.actions if a.kind == "manifest"]

    def commands(self) -> list[str]:
        return [a.text for a in self.actions if a.kind == "command"]

    def steps(self) -> list[str]:
        return list(dict.fromkeys(a.step for a in self.actions))

    def write(self, out_dir: Path) -> list[Path]:
        """Every manifest as its own YAML file (apply order), each file action, and commands.sh."""
        out_dir = Path(out_dir)
        (out_dir / "manifests").mkdir(parents=True, exist_ok=True)
        written = []
        manifests = [a for a in self.actions if a.kind == "manifest"]
        for i, action in enumerate(manifests, 1):
            kind, _, where = action.text.partition(" ")
            path = out_dir / "manifests" / f"{i:02d}-{kind.lower()}-{where.replace('/', '-')}.yaml"
            path.write_text(to_yaml(action.body))
            written.append(path)
        for action in self.actions:
            if action.kind == "file":
                path = out_dir / action.text
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(action.body)
                written.append(path)
        script = ["#!/usr/bin/env bash",
                  "# The commands of `python -m testbed up --backend kind`, in order (manifests/ holds what it applies).",
                  "set -euo pipefail"]
        for action in self.actions:
            if action.kind == "command":
                script.append(action.text)
            elif action.kind in ("wait", "note", "api"):
                script.append(f"# {action.kind}: {action.text}")
            elif action.kind == "manifest":
                script.append(f"# apply (server-side, field validation Strict): {action.text}")
        commands = out_dir / "commands.sh"
        commands.write_text("\n".join(script) + "\n")
        written.append(commands)
        return written

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _log(self, text: str) -> None:
        if self.log is not None:
            print(text, file=self.log, flush=True)


def run(argv: list[str], *, timeout_s: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing output; a timeout comes back as returncode None."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, None, _text(exc.stdout), _text(exc.stderr))
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def tail_of(proc: subprocess.CompletedProcess, lines: int = TAIL_LINES) -> str:
    text = "\n".join(part for part in (proc.stdout or "", proc.stderr or "") if part.strip())
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
