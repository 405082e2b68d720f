"""When a kind `up` step fails: show the cluster state that explains it, then clean up.

A cluster this attempt created is deleted unless --retain; one that existed before is kept.
"""

from __future__ import annotations

from testbed.backends.kind import cluster, diagnostics, helm
from testbed.backends.kind.plan import run, tail_of
from testbed.steps import UpContext


def report_and_clean(ctx: UpContext) -> None:
    """Show the failed step's cluster state; delete a cluster this attempt created, unless --retain."""
    run_ = ctx.extra.get("kind")
    if run_ is None or run_.plan.dry_run:
        return
    step = ctx.extra.get("failed_step", "?")
    commands = diagnose_commands(ctx, step)
    if commands:
        ctx.say(f"  state of the cluster when {step!r} failed:")
        for line in diagnostics.collect(commands).splitlines():
            ctx.say(f"    {line}")
    cf = run_.files
    if not ctx.extra.get("created_cluster"):
        if ctx.extra.get("created_cluster") is False:
            ctx.say(f"  the kind cluster {cf.name!r} existed before this attempt: kept. "
                    f"`python -m testbed down --backend kind` deletes it.")
        return
    if ctx.extra.get("retain"):
        ctx.say(f"  kept the kind cluster {cf.name!r} (--retain): KUBECONFIG={cf.kubeconfig} kubectl get pods -A; "
                f"`python -m testbed down --backend kind` deletes it.")
        return
    ctx.say(f"  deleting the kind cluster {cf.name!r} this attempt created (keep it with --retain) ...")
    proc = run(cluster.delete_command(cf), timeout_s=300)
    if proc.returncode != 0:
        ctx.say(f"  could not delete it: {tail_of(proc)}\n  run `kind delete cluster --name {cf.name}`")
        return
    cf.state.unlink(missing_ok=True)


def diagnose_commands(ctx: UpContext, step: str) -> list[list[str]]:
    """The kubectl (or kind/docker) commands whose output explains a failure of `step`."""
    run_ = ctx.extra["kind"]
    cf = run_.files
    if step in ("preflight", "model artifact", "detectors"):  # local steps: their error says it all
        return []
    if step == "kind cluster":
        return [["kind", "get", "clusters"],
                ["docker", "ps", "-a", "--filter", f"name={cf.name}-control-plane"],
                ["docker", "logs", "--tail", "30", f"{cf.name}-control-plane"]]
    if not cf.kubeconfig.is_file():
        return []
    for chart in run_.pins.charts:
        if step.startswith(f"helm {chart.release} "):
            return ([helm.status_command(chart, cf.kubeconfig)]
                    + diagnostics.namespace_commands(cf.kubeconfig, chart.namespace))
    if step in ("pre-load images", "wait for CRDs, webhooks and controllers"):
        return diagnostics.cluster_commands(cf.kubeconfig)
    commands = diagnostics.namespace_commands(cf.kubeconfig, run_.namespace)
    for dep in ctx.deployments.values():
        commands += diagnostics.object_commands(cf.kubeconfig, dep.kind.lower(), ctx.artifact.name, run_.namespace)
    if step == "Prometheus scrapes each platform":
        commands += diagnostics.namespace_commands(cf.kubeconfig, "monitoring")
        commands.append(diagnostics.kubectl(cf.kubeconfig, "get", "podmonitors", "-A"))
    return commands
