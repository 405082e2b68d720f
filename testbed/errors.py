"""Named errors. Each message names the object at fault and the fix, in one paragraph.

The CLI prints `str(error)` and exits non-zero; nothing else formats errors.
"""


class TestbedError(Exception):
    """Base class: an error the user can act on."""

    exit_code = 2


class UnknownPlatform(TestbedError):
    def __init__(self, name: str, known: list[str], backend: str | None = None):
        if backend:
            from testbed.platforms import DEPLOYS

            super().__init__(
                f"The {backend} backend does not offer platform {name!r} (no {DEPLOYS.get(backend, backend)} deployment in its "
                f"deployers/ module). It offers: {', '.join(known) or 'none'}; pass those to --platforms."
            )
        else:
            super().__init__(
                f"Unknown platform {name!r}. Known platforms: {', '.join(known)}. "
                f"Pass one or more of them to --platforms, separated by commas."
            )


class UnknownBackend(TestbedError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"Unknown backend {name!r}. Known backends: {', '.join(known)}.")


class PortBusy(TestbedError):
    def __init__(self, port: int, owner: str, holder: str = ""):
        held = f" It is held by {holder}." if holder else ""
        super().__init__(
            f"Port {port} on 127.0.0.1, wanted for {owner}, is already in use.{held} "
            f"Stop whatever holds it, or leave the port unset so the testbed picks a free one."
        )


class MissingBinary(TestbedError):
    def __init__(self, name: str, env_var: str, install: str):
        super().__init__(
            f"The {name!r} binary was not found: neither ${env_var} nor PATH points to it. "
            f"Install it ({install}) or set {env_var}=/path/to/{name}."
        )


class ArtifactError(TestbedError):
    def __init__(self, path, problem: str):
        super().__init__(
            f"Model artifact {path} is not usable: {problem}. "
            f"Rebuild it with `python -m testbed artifact --rebuild` (or delete the directory)."
        )


class EnvironmentBuildFailed(TestbedError):
    def __init__(self, env: str, command: str, tail: str):
        super().__init__(
            f"Building the {env!r} runtime environment failed while running `{command}`. "
            f"Last output:\n{tail}\n"
            f"Check network access to PyPI, then run `python -m testbed up` again "
            f"(finished environments are reused)."
        )


class RuntimeStartFailed(TestbedError):
    def __init__(self, platform: str, reason: str, log_path, tail: str):
        super().__init__(
            f"The {platform} runtime did not become ready: {reason}. Its log is {log_path}; "
            f"last lines:\n{tail}\n"
            f"Everything `up` had started for this attempt was stopped. Fix the cause above and run "
            f"`python -m testbed up` again."
        )


class AlreadyRunning(TestbedError):
    def __init__(self, what: str, detail: str):
        super().__init__(f"{what} is already running ({detail}). Use `python -m testbed down` first.")


class NotRunning(TestbedError):
    def __init__(self, what: str):
        super().__init__(
            f"{what} is not running. Start the testbed with `python -m testbed up` first."
        )


class ParityFailed(TestbedError):
    def __init__(self, detail: str):
        super().__init__(
            f"Prediction parity failed: the platforms do not agree with the in-process model on the "
            f"fixed probe rows.\n{detail}\n"
            f"The testbed stays up so you can inspect it; `python -m testbed down` stops it."
        )


class PrometheusError(TestbedError):
    def __init__(self, what: str, detail: str):
        super().__init__(f"Prometheus {what}: {detail}")


class InvalidPayload(TestbedError):
    def __init__(self, what: str, detail: str):
        super().__init__(f"{what} is malformed: {detail}")


class StepFailed(TestbedError):
    """Wraps an unexpected exception inside an `up` step so the message names the step."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"Step {step!r} failed: {type(cause).__name__}: {cause}")


class ExperimentError(TestbedError):
    def __init__(self, what: str, detail: str):
        super().__init__(f"Experiment {what}: {detail}")


class ReportError(TestbedError):
    """Results that cannot be put in one report without misleading: the message says why and what to do."""

    def __init__(self, detail: str):
        super().__init__(f"Report: {detail}")

# --- kind backend ----------------------------------------------------------------------------


class PreflightFailed(TestbedError):
    """Everything missing for `up --backend kind`, reported at once, each with its fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"The kind backend cannot start; {len(problems)} prerequisite(s) missing:\n{listed}\n"
            f"Fix them, then run `python -m testbed up --backend kind` again "
            f"(`--dry-run` shows the whole plan without any of them)."
        )


class CommandFailed(TestbedError):
    def __init__(self, command: str, returncode: int | None, tail: str, hint: str = ""):
        how = "timed out" if returncode is None else f"exited with code {returncode}"
        super().__init__(f"`{command}` {how}. Last output:\n{tail}" + (f"\n{hint}" if hint else ""))


class ClusterConflict(TestbedError):
    def __init__(self, name: str, problem: str):
        super().__init__(
            f"A kind cluster named {name!r} already exists but cannot be reused: {problem}. "
            f"Delete it with `python -m testbed down --backend kind` (or `kind delete cluster --name {name}`), "
            f"or set TESTBED_KIND_CLUSTER to another name."
        )


class ManifestRejected(TestbedError):
    """The API server refused a manifest; `message` is its own words, verbatim."""

    def __init__(self, kind: str, name: str, namespace: str | None, status: int | None, message: str):
        self.kind, self.name, self.namespace, self.status, self.message = kind, name, namespace, status, message
        where = f"{namespace}/{name}" if namespace else name
        super().__init__(
            f"The API server rejected {kind} {where} (HTTP {status}): {message}\n"
            f"The manifest is what `python -m testbed up --backend kind --dry-run --out DIR` writes; "
            f"fix its template under manifests/ or the deployer that fills it."
        )


class ResourceNotReady(TestbedError):
    def __init__(self, what: str, reason: str, timeout_s: float | None, state: str = ""):
        waited = f"within {timeout_s:.0f}s" if timeout_s is not None else "and failed"
        super().__init__(
            f"{what} did not become ready {waited}: {reason}"
            + (f"\nCluster state:\n{state}" if state else "")
        )


class NoScrapeTarget(TestbedError):
    """A PodMonitor endpoint would scrape nothing on the pods the platform's operator generates."""

    def __init__(self, monitor: str, endpoints: list[str], declared: str):
        super().__init__(
            f"{monitor} would give Prometheus no target for {', '.join(endpoints)}: no container port of the "
            f"pods it selects matches (port-less containers are scraped on port 80). Those pods will declare: "
            f"{declared}. Declare the port in the custom resource, or relabel __address__ in the PodMonitor "
            f"(manifests/<platform>/podmonitor.yaml); `up` would otherwise wait out its scrape step."
        )


class ArchitectureUnsupported(TestbedError):
    """Images the plan pulls publish no build for the node's CPU architecture."""

    def __init__(self, arch: str, missing: dict[str, list[str]], fix: str):
        self.missing = missing
        listed = "\n".join(f"  - {platform}: {', '.join(images)}" for platform, images in missing.items())
        super().__init__(
            f"The kind node runs {arch}, and these images have no {arch} build (cluster/versions.yaml "
            f"`architectures`, read from each project's release build):\n{listed}\n{fix}"
        )


class SchemaViolation(TestbedError):
    def __init__(self, what: str, errors: list[str], crd: str):
        listed = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{what} does not match the upstream CRD schema ({crd}):\n{listed}")

class PlatformNotUp(TestbedError):
    def __init__(self, platform: str, state: str, ready: list[str]):
        running = ", ".join(ready) if ready else "none"
        super().__init__(
            f"Platform {platform!r} is not up in the running testbed (its state: {state}; ready platforms: "
            f"{running}). Bring it up with `python -m testbed up --platforms {platform}` (after "
            f"`python -m testbed down`), or leave it out of --platforms."
        )


class ProbeUnavailable(TestbedError):
    def __init__(self, name: str, problem: str, known: list[str]):
        super().__init__(
            f"Probe {name!r} cannot run: {problem}. Known probes: {', '.join(known)} (or `all`)."
        )


class UserDataError(TestbedError):
    def __init__(self, path, problem: str):
        super().__init__(f"Data file {path} is not usable: {problem}")


class UserModelError(TestbedError):
    """A model a user asked the testbed to serve (`up --model`) cannot be served as given."""

    def __init__(self, path, problem: str):
        super().__init__(f"Model {path} cannot be served: {problem}. Nothing was changed: the running testbed "
                         f"(if any) and its artifacts are as they were.")


class EmptyScenario(TestbedError):
    def __init__(self, what: str, n):
        super().__init__(
            f"The scenario {what} has {n!r} samples: a probe needs at least one row. "
            f"Pass a positive sample count, or a CSV with at least one data row under its header."
        )


class DetectorMismatch(TestbedError):
    def __init__(self, path, problem: str):
        super().__init__(
            f"Detector artifact {path} does not match the model: {problem}. Detectors must be fitted on "
            f"the same model artifact they guard; delete {path} and run `python -m testbed up` again "
            f"(it refits them on the current artifact's reference sample)."
        )


class DetectionPathDown(TestbedError):
    def __init__(self, platform: str, what: str, detail: str):
        super().__init__(
            f"The {what} detection path of {platform} is not up ({detail}). "
            f"Check `python -m testbed status`; bring the testbed up with `python -m testbed up` "
            f"(with that platform in --platforms) before probing it."
        )


class EndpointUnreachable(TestbedError):
    def __init__(self, url: str, detail: str):
        super().__init__(
            f"Nothing answers at {url} ({detail}); no load was sent. Check that the target is up "
            f"(`python -m testbed status`) and that the URL's host and port are right."
        )


class NonLoopbackTarget(TestbedError):
    def __init__(self, url: str, address: str):
        super().__init__(
            f"Refusing to send load to {url}: it resolves to {address}, which is not a loopback address. "
            f"Load tests here target 127.0.0.0/8 or ::1 only; pass allow_non_loopback=True "
            f"(--allow-non-loopback) only for a host you own and mean to load."
        )


class LoadgenBuildFailed(TestbedError):
    def __init__(self, command: str, output: str):
        super().__init__(
            f"Compiling the load generator's engine failed: `{command}`:\n{output}\n"
            f"It needs a C compiler (apt-get install gcc; or set CC=/path/to/cc)."
        )


class FaultTargetMissing(TestbedError):
    def __init__(self, platform: str, detail: str):
        super().__init__(
            f"The fault on {platform} found no process to act on: {detail}. Nothing was killed. Check "
            f"`python -m testbed status`; if {platform} is degraded, `python -m testbed up` restarts the testbed."
        )


class FaultAborted(TestbedError):
    def __init__(self, probe: str, platform: str, detail: str):
        super().__init__(
            f"The {probe} fault on {platform} was not injected: {detail}. No process was signalled and the "
            f"load generator has exited; fix the cause and run the probe again."
        )
