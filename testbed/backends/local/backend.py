"""`up`, `status` and `down` for the local backend.

`up` is a list of steps over one UpContext. What it starts is written to the state file as
soon as it is started, so `down` can stop it from another process, even after a crash.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx

from deployers import PLATFORMS, get_platform
from testbed import artifact as artifact_mod
from testbed import prometheus, state
from testbed.backends.local import detection, envs, processes, repair
from testbed.endpoint import Endpoint
from testbed.errors import PrometheusError, TestbedError
from testbed.settings import Settings
from testbed.steps import Step, UpContext, verify_parity

PROMETHEUS_READY_S = 30.0


class LocalBackend:
    name = "local"

    # --- up ------------------------------------------------------------------------------------
    def up_steps(self, ctx: UpContext) -> list[Step]:
        return [
            Step("check prerequisites", self._prerequisites),
            Step("model artifact", self._artifact),
            Step("runtime environments", self._environments),
            Step("detectors", lambda ctx: detection.step_detectors(ctx, self._save)),
            Step("start runtimes", self._start_runtimes),
            Step("start results exporter", self._start_results_exporter),
            Step("start detection paths", lambda ctx: detection.step_start_paths(ctx, self._save)),
            Step("start Prometheus", self._start_prometheus),
            Step("wait for readiness", self._wait_ready),
            Step("prediction parity", self._parity),
            Step("wait for detection paths", lambda ctx: detection.step_wait_paths(ctx, self._save)),
            Step("check scrape targets", self._scrape_targets),
        ]

    def already_up(self, settings: Settings) -> dict | None:
        """The status of a complete, healthy testbed, or None. A complete testbed that is degraded is left
        as it is for repair_steps; what an interrupted `up` left is stopped, so `up` starts afresh."""
        current = state.load(settings.run_dir)
        if current is None:
            return None
        if current.get("complete") and not current.get("corrupt"):
            status = self.status(settings)
            return status if status["state"] == "running" else None
        self._stop_recorded(current, lambda m: None)
        self._archive_run_dir(settings)
        return None

    # --- repair: a second `up` on a degraded testbed --------------------------------------------
    def repair_steps(self, ctx: UpContext) -> list[Step] | None:
        """Steps that restart exactly the recorded processes that died, wait for them, and check parity
        and the scrape targets again; None when there is no complete testbed to repair."""
        current = state.load(ctx.settings.run_dir)
        if not current or not current.get("complete") or current.get("corrupt"):
            return None
        self._resume(ctx, current)
        ctx.extra["restart"] = [name for _, name, _ in repair.dead(current)]
        return [
            Step("restart what died", self._restart_dead),
            Step("wait for what was restarted", self._wait_restarted),
            Step("prediction parity", self._parity),
            Step("check scrape targets", self._scrape_targets),
        ]

    def _resume(self, ctx: UpContext, current: dict) -> None:
        """ctx as `up` left it, from the state file."""
        ctx.artifact = artifact_mod.load(Path(current["model"]["path"]))
        for name, info in current["platforms"].items():
            dep = get_platform(name).deployment_for(self.name)
            dep.restore(info)
            ctx.deployments[name] = dep
            ctx.extra.setdefault("versions", {})[name] = info.get("versions", {})
        for key in ("prometheus", "results_exporter", "detection", "parity", "skipped_platforms"):
            ctx.extra[key] = current.get(key)
        ctx.extra["scrape_jobs"] = (current.get("prometheus") or {}).get("scrape_jobs") or []
        ctx.extra["complete"] = True
        ctx.timings.update(current.get("timings") or {})
        ctx.endpoints = {name: dep.endpoint(ctx) for name, dep in ctx.deployments.items()}

    def _restart_dead(self, ctx: UpContext) -> None:
        current = state.load(ctx.settings.run_dir)
        started = ctx.extra["restarted"] = {}
        for kind, name, _ in repair.dead(current):
            if kind == repair.PLATFORM:
                ctx.deployments[name].restart(ctx)
                pid = ctx.deployments[name].pid
                started[name] = time.monotonic()
            else:
                info = repair.entry(ctx, kind, name)
                started[name] = repair.relaunch(name, info)
                pid = info["pid"]
            ctx.say(f"  {name}: started again, pid {pid}")
            self._save(ctx)

    def _wait_restarted(self, ctx: UpContext) -> None:
        """The restarted platforms as `up` waits for them (MLServer's models loaded again), their
        detection hooks (Ray's detected application), then every other restarted process."""
        platforms = [n for n in ctx.extra["restarted"] if n in ctx.deployments]
        if platforms:
            self._wait_ready(ctx, platforms)
            if ctx.extra.get("detection"):
                service_url = ctx.extra["detection"]["service_url"]
                for name in platforms:
                    hook = getattr(ctx.deployments[name], "detection_ready", None)
                    if hook is not None:
                        hook(ctx, service_url, ctx.settings.ready_timeout_s)
        for kind, name, _ in repair.recorded(state.load(ctx.settings.run_dir)):
            if kind != repair.PLATFORM and name in ctx.extra["restarted"]:
                info = repair.entry(ctx, kind, name)
                took = repair.wait_ready(name, info, ctx.extra["restarted"][name], ctx.settings.ready_timeout_s)
                ctx.say(f"  {name} ready after {took:.1f}s")
        self._save(ctx)

    def release(self, ctx: UpContext) -> None:
        processes.release_ports()

    def _prerequisites(self, ctx: UpContext) -> None:
        ctx.extra["started_from"] = processes.started_count()
        ctx.extra["prometheus_bin"] = prometheus.find_binary(ctx.settings.prometheus_bin)
        if ctx.settings.prometheus_port is not None:
            processes.claim_port(ctx.settings.prometheus_port, "Prometheus")
        ctx.settings.run_dir.mkdir(parents=True, exist_ok=True)
        ctx.deployments = {name: get_platform(name).deployment_for(self.name) for name in ctx.settings.platforms}
        for dep in ctx.deployments.values():
            dep.check_prerequisites()  # before any environment is built (TorchServe's java)
        self._save(ctx)

    def _artifact(self, ctx: UpContext) -> None:
        if ctx.settings.model is not None:
            from testbed import usermodel

            ctx.artifact = usermodel.ensure(ctx.settings.model, ctx.settings.artifacts_dir, ctx.settings.envs_dir,
                                            ctx.say)
            ctx.extra["skipped_platforms"] = usermodel.assign_platforms(ctx)
            self._save(ctx)
        else:
            ctx.artifact = artifact_mod.ensure(ctx.settings.artifacts_dir, ctx.settings.artifact_seed)
        ctx.say(f"  {ctx.artifact.name} sha256 {ctx.artifact.sha256[:12]} at {ctx.artifact.path}")

    def _environments(self, ctx: UpContext) -> None:
        for name, dep in ctx.deployments.items():
            started = time.monotonic()
            if dep.build_note and not envs.is_current(dep.env, envs.env_dir(dep.env, ctx.settings.envs_dir)):
                ctx.say(f"  {name}: {dep.build_note}")
            env_dir = envs.ensure(dep.env, ctx.settings.envs_dir, ctx.say)
            ctx.timings[f"env:{name}"] = round(time.monotonic() - started, 2)
            ctx.extra.setdefault("versions", {})[name] = envs.installed_versions(env_dir, list(dep.version_packages))

    def _start_runtimes(self, ctx: UpContext) -> None:
        for name, dep in ctx.deployments.items():
            dep.deploy(ctx)
            ctx.say(f"  {name}: pid {dep.pid}, ports {dep.ports}")
            self._save(ctx)

    def _start_prometheus(self, ctx: UpContext) -> None:
        run_dir = ctx.settings.run_dir
        port = processes.claim_port(ctx.settings.prometheus_port, "Prometheus")
        # A platform that exposes no metrics (its Endpoint has no metrics_url) is no scrape target: the
        # monitoring probe reports that as a finding.
        targets = [prometheus.ScrapeTarget(job=name, url=dep.endpoint(ctx).metrics_url,
                                           labels=(("platform", name), ("backend", self.name)))
                   for name, dep in ctx.deployments.items() if dep.endpoint(ctx).metrics_url]
        targets += ctx.extra.get("extra_scrape_targets", [])
        targets += detection.scrape_targets(ctx, self.name)
        ctx.extra["scrape_jobs"] = [t.job for t in targets]
        config_file = run_dir / "prometheus.yml"
        state.atomic_write_text(config_file, prometheus.render_config(targets, ctx.settings.scrape_interval_s))
        # One TSDB per run: a previous run's series carry no staleness markers (its Prometheus was
        # stopped) and would answer instant queries for 5 more minutes, mixing runs in every sum().
        # `down` moves it to last-run/ with the logs.
        data_dir = run_dir / "prometheus-data"
        cmd = prometheus.server_command(ctx.extra["prometheus_bin"], config_file, data_dir, port)
        log = run_dir / "prometheus.log"
        pid = processes.start(cmd, log, cwd=run_dir)
        ctx.extra["prometheus"] = {"pid": pid, "pid_start": processes.start_ticks(pid), "port": port,
                                   "url": f"http://127.0.0.1:{port}", "ready_url": f"http://127.0.0.1:{port}/-/ready",
                                   "config": str(config_file), "log": str(log), "data": str(data_dir),
                                   "scrape_jobs": ctx.extra["scrape_jobs"],
                                   "launch": {"cmd": cmd, "cwd": str(run_dir), "env": {}}}
        self._save(ctx)
        client = prometheus.PrometheusClient(ctx.extra["prometheus"]["url"])
        deadline = time.monotonic() + PROMETHEUS_READY_S
        while not client.ready():
            if not processes.alive(pid) or time.monotonic() > deadline:
                processes.reap(pid)
                raise PrometheusError("did not start", f"see {log}:\n{processes.log_tail(log)}")
            time.sleep(0.1)

    def _start_results_exporter(self, ctx: UpContext) -> None:
        """Probe verdicts and scores as metrics (testbed/exporter.py), scraped like a platform."""
        import sys

        from testbed.results import RESULTS_DIR

        port = processes.claim_port(None, "results exporter")
        log = ctx.settings.run_dir / "results-exporter.log"
        cmd = [sys.executable, "-m", "testbed", "results-exporter", "--port", str(port), "--results-dir",
               str(RESULTS_DIR)]
        pid = processes.start(cmd, log, cwd=ctx.settings.run_dir)
        url = f"http://127.0.0.1:{port}/metrics"
        ctx.extra["results_exporter"] = {"pid": pid, "pid_start": processes.start_ticks(pid), "port": port,
                                         "url": url, "ready_url": url, "log": str(log),
                                         "results_dir": str(RESULTS_DIR),
                                         "launch": {"cmd": cmd, "cwd": str(ctx.settings.run_dir), "env": {}}}
        ctx.extra.setdefault("extra_scrape_targets", []).append(
            prometheus.ScrapeTarget(job="testbed-results", url=url))  # results carry their own backend label
        self._save(ctx)  # no wait here: "check scrape targets" waits for it like for every target

    def _wait_ready(self, ctx: UpContext, only: list[str] | None = None) -> None:
        """Wait for every runtime (or `only` these) at once (they start in parallel), printing progress."""
        errors: dict[str, TestbedError] = {}
        waiting = {name: dep for name, dep in ctx.deployments.items() if only is None or name in only}

        def wait(name, dep):
            try:
                ctx.endpoints[name] = dep.wait_ready(ctx, ctx.settings.ready_timeout_s)
            except TestbedError as exc:
                errors[name] = exc

        threads = {name: threading.Thread(target=wait, args=(name, dep), daemon=True)
                   for name, dep in waiting.items()}
        for t in threads.values():
            t.start()
        started = last_print = time.monotonic()
        last_line = ""
        while any(t.is_alive() for t in threads.values()):
            line = ", ".join(
                f"{n} ready" if d.ready_after_s is not None else (f"{n} FAILED" if n in errors else f"{n} starting")
                for n, d in waiting.items())
            if line != last_line or time.monotonic() - last_print >= 5:
                ctx.say(f"  [{time.monotonic() - started:5.1f}s] {line}")
                last_line, last_print = line, time.monotonic()
            time.sleep(0.5)
        for name, dep in waiting.items():
            if dep.ready_after_s is not None:
                ctx.timings[f"ready:{name}"] = dep.ready_after_s
                ctx.say(f"  {name} ready after {dep.ready_after_s:.1f}s")
        self._save(ctx)
        if errors:
            raise next(iter(errors.values()))

    def _parity(self, ctx: UpContext) -> None:
        verify_parity(ctx, self._save)

    def _scrape_targets(self, ctx: UpContext) -> None:
        client = prometheus.PrometheusClient(ctx.extra["prometheus"]["url"])
        deadline = time.monotonic() + max(30.0, 10 * ctx.settings.scrape_interval_s)
        while True:
            targets = client.targets()
            health = {t["job"]: t["health"] for t in targets}
            expected = len(ctx.extra.get("scrape_jobs", ctx.deployments))
            if len(targets) == expected and all(h == "up" for h in health.values()):
                break
            if time.monotonic() > deadline:
                bad = [f"{t['job']} ({t['url']}): {t['health']} {t['last_error']}" for t in targets if t["health"] != "up"]
                raise PrometheusError("does not scrape every platform", "; ".join(bad) or f"targets: {health}")
            time.sleep(0.5)
        ctx.extra["complete"] = True
        self._save(ctx)
        processes.release_ports()  # everything listens now (processes.claim_port)
        ctx.say(f"  Prometheus at {ctx.extra['prometheus']['url']} scrapes {', '.join(sorted(health))}: all up")

    def rollback(self, ctx: UpContext) -> None:
        ctx.say("  stopping what this attempt started ...")
        processes.release_ports()
        self._stop_recorded(state.load(ctx.settings.run_dir) or {}, ctx.say)
        for sid in processes.started_since(ctx.extra.get("started_from", processes.started_count())):
            if processes.session_members(sid):  # started, and interrupted before the state file named it
                name = processes.command_name(sid)
                seen = processes.stop_session(sid)
                ctx.say(f"  stopped session {sid} ({name}, {len(seen)} processes): started by this attempt, "
                        f"not recorded yet")
        self._archive_run_dir(ctx.settings)

    def _save(self, ctx: UpContext) -> None:
        state.save(ctx.settings.run_dir, {
            "backend": self.name,
            "complete": bool(ctx.extra.get("complete")),
            "state_dir": str(ctx.settings.state_dir),
            "model": ctx.artifact.summary() if ctx.artifact else None,
            "prometheus": ctx.extra.get("prometheus"),
            "results_exporter": ctx.extra.get("results_exporter"),
            "platforms": {
                name: {**(dep.to_state() if dep.pid is not None else {"pid": None}),
                       "endpoint": dep.endpoint(ctx).to_json() if dep.pid is not None else None,
                       "versions": ctx.extra.get("versions", {}).get(name, {})}
                for name, dep in ctx.deployments.items()
            },
            "skipped_platforms": ctx.extra.get("skipped_platforms", {}),
            "parity": ctx.extra.get("parity"),
            "detection": ctx.extra.get("detection"),
            "timings": ctx.timings,
        })

    # --- down ----------------------------------------------------------------------------------
    def down(self, settings: Settings, out=None) -> list[str]:
        say = (lambda m: print(m, file=out, flush=True)) if out else (lambda m: None)
        current = state.load(settings.run_dir)
        if current is None:
            return []
        lines = self._stop_recorded(current, say)
        self._archive_run_dir(settings)
        return lines

    def _stop_recorded(self, current: dict, say) -> list[str]:
        lines = []
        for _, name, info in repair.recorded(current):
            pid = info.get("pid")
            if not pid or not processes.session_members(pid):
                continue
            if not processes.is_ours(pid, info.get("pid_start")) and processes.alive(pid):
                # The leader is another program now (pid reused after a crash): never signal it.
                # Children of our dead leader keep its session id, so they are still stopped.
                lines.append(f"left pid {pid} alone: it is no longer {name} (pid reused)")
                say(f"  {lines[-1]}")
                continue
            seen = processes.stop_session(pid)
            lines.append(f"stopped {name} (session {pid}, {len(seen)} processes)")
            say(f"  {lines[-1]}")
        for name, info in (current.get("platforms") or {}).items():
            # Processes a runtime starts outside its session (found by what it recorded, never by name).
            left = get_platform(name).deployments["local"].leftovers(info) if name in PLATFORMS else []
            for pid in left:
                processes.stop_session(pid, grace_s=5.0)
            if left:
                lines.append(f"stopped {len(left)} more {name} processes outside its session")
                say(f"  {lines[-1]}")
        return lines

    def _archive_run_dir(self, settings: Settings) -> None:
        """Keep the last run's logs and state for post-mortems; the next `up` starts clean."""
        if settings.run_dir.exists():
            last = settings.state_dir / "last-run"
            shutil.rmtree(last, ignore_errors=True)
            settings.run_dir.rename(last)

    # --- status --------------------------------------------------------------------------------
    def faults(self, settings: Settings, dry_run: bool = False, out=None):
        """What the fault probes act through here: recorded processes, SIGKILL, restart (testbed.faults)."""
        from testbed.backends.local.faults import LocalFaults

        return LocalFaults(settings, dry_run=dry_run, out=out)

    def status(self, settings: Settings) -> dict:
        current = state.load(settings.run_dir)
        if current is None:
            return {"schema": "testbed.status/v1", "backend": self.name, "state": "stopped", "model": None,
                    "prometheus": None, "platforms": {}}
        platforms = {}
        with httpx.Client(timeout=2.0) as client:
            for name, info in (current.get("platforms") or {}).items():
                platforms[name] = _platform_status(name, info, client)
            started = repair.check(current, client)
        prom = current.get("prometheus") or {}
        prom_status = None
        if prom:
            prom_status = {"url": prom["url"], "pid": prom["pid"], "state": "dead", "targets": []}
            if processes.is_ours(prom["pid"], prom.get("pid_start")):
                client = prometheus.PrometheusClient(prom["url"], timeout_s=3.0)
                prom_status["state"] = "ready" if client.ready() else "not ready"
                try:
                    prom_status["targets"] = client.targets()
                except PrometheusError as exc:
                    prom_status["error"] = str(exc)
        for row in started:
            if row["kind"] == repair.PLATFORM:
                row["state"] = platforms[row["name"]]["state"]
        problems = [f"{row['name']} ({row['kind']}, pid {row['pid']}) is {row['state']}" for row in started
                    if row["state"] not in ("ready", "running")]
        if not current.get("complete"):
            problems.insert(0, "`up` did not finish")
        return {
            "schema": "testbed.status/v1",
            "backend": self.name,
            "state": "degraded" if problems or not platforms else "running",
            "problems": problems,
            "processes": started,
            "exposure": _exposure(current, platforms),
            "model": current.get("model"),
            "prometheus": prom_status,
            "platforms": platforms,
            "skipped_platforms": current.get("skipped_platforms") or {},
            "detection": current.get("detection"),
            "timings": current.get("timings", {}),
            "results_exporter": current.get("results_exporter"),
        }


def _exposure(current: dict, platforms: dict) -> dict:
    """Every listening socket beyond loopback of every process `up` started, each with its cause when the
    platform offers no way to close it (LocalProcess.known_listeners); the rest are unexplained."""
    exposed = [{"owner": name, "platform": name, **sock} for name, p in platforms.items()
               for sock in p["listening"] if not sock["loopback"]]
    helpers = {f"detection {name}": info for name, info in ((current.get("detection") or {}).get("processes")
                                                            or {}).items()}
    helpers["results exporter"] = current.get("results_exporter") or {}
    helpers["prometheus"] = current.get("prometheus") or {}
    for owner, info in helpers.items():
        if processes.is_ours(info.get("pid"), info.get("pid_start")):
            exposed += [{"owner": owner, "platform": None, **sock}
                        for sock in _sockets(processes.session_members(info["pid"])) if not sock["loopback"]]
    return {"non_loopback_sockets": exposed, "count": len(exposed),
            "unexplained": sum(1 for x in exposed if not x.get("cause")),
            "loopback_by_testbed": {name: p["loopback_by_testbed"] for name, p in platforms.items()
                                    if p.get("loopback_by_testbed")},
            "note": "listening sockets of the testbed's processes not bound to loopback; `cause` says why one "
                    "stays open (the platform has no option that closes it); loopback_by_testbed: what the testbed "
                    "does beyond a platform's bind settings to keep it on loopback"}


def _sockets(members: list[int], known=None) -> list[dict]:
    """The listening sockets of these processes; `cause` on those beyond loopback that `known` explains."""
    out = []
    for pid, socks in processes.listening_sockets(members).items():
        cmdline = processes.command_line(pid)
        for addr, port in socks:
            loopback = processes.is_loopback(addr)
            out.append({"pid": pid, "process": processes.command_name(pid), "address": addr, "port": port,
                        "loopback": loopback,
                        **({} if loopback else {"cause": known(cmdline, addr) if known else None})})
    return sorted(out, key=lambda x: (x["loopback"], x["port"]))


def _platform_status(name: str, info: dict, client: httpx.Client) -> dict:
    ep = Endpoint.from_json(info["endpoint"]) if info.get("endpoint") else None
    pid = info.get("pid")
    state_ = "not started"
    if pid:
        state_ = "dead"
        if processes.is_ours(pid, info.get("pid_start")):
            state_ = "not ready"
            try:
                if ep and get_platform(name).protocol.is_ready(client, ep):
                    state_ = "ready"
            except httpx.HTTPError:
                pass
    deployment = get_platform(name).deployments["local"]
    members = deployment.members(info) if pid else []
    sockets = _sockets(members, deployment.listener_cause)
    return {
        "state": state_,
        "v2_base_url": ep.base_url if ep else None,
        "infer_url": get_platform(name).protocol.infer_url(ep) if ep else None,
        "protocol": get_platform(name).protocol.describe(),
        "model_name": ep.model_name if ep else None,
        "metrics_url": ep.metrics_url if ep else None,
        "pid": pid,
        "processes": len(members),
        "rss_mb": round(processes.rss_bytes(members) / 2**20, 1),
        "ports": info.get("ports", {}),
        "log": info.get("log"),
        "workdir": info.get("workdir"),
        "ready_after_s": info.get("ready_after_s"),
        "versions": info.get("versions", {}),
        "endpoint": info.get("endpoint"),
        "listening": sockets,
        "loopback_by_testbed": list(deployment.loopback_by_testbed),
    }
