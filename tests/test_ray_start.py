"""Ray's start-up on a loaded machine: ray.init is tried again when Ray's fixed 30 s wait for its raylet runs
out, and what the failed attempt started is stopped (in the rayserve environment, so: integration)."""

import subprocess
import textwrap

import pytest

from deployers import rayserve
from testbed.backends.local import envs
from testbed.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent("""
    import os, subprocess
    import ray_app
    calls = []
    def init():
        calls.append(1)
        if len(calls) < ray_app.RAY_INIT_ATTEMPTS:
            subprocess.Popen(["sleep", "300"])  # what a failed attempt leaves behind (Ray's GCS, raylet)
            raise Exception("The current node timed out during startup. This could happen because ...")
    ray_app.init_ray(init)
    left = [p for p in os.listdir("/proc") if p.isdigit()
            and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())]
    print(len(calls), len(left))
    try:
        ray_app.init_ray(lambda: (_ for _ in ()).throw(Exception("another failure")))
    except Exception as exc:
        print(exc)
""")


def test_ray_init_is_tried_again_after_its_startup_timeout():
    python = envs.python_of(envs.ensure(rayserve.ENV, Settings().envs_dir))
    proc = subprocess.run([str(python), "-c", SCRIPT], cwd=REPO_ROOT / "deployers" / "runtimes", capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2:] == ["3 0", "another failure"]  # third attempt ran, nothing left; other errors are not retried
    assert proc.stdout.count("trying again") == 2
