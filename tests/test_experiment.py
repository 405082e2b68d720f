"""The experiment harness on the real local testbed: a run writes a self-describing result set, an
interrupted run keeps its finished units, and --resume runs only the rest."""

import argparse
import json

import pytest

from probes import parity_probe
from testbed.errors import ExperimentError
from testbed.experiment import ExperimentSpec, add_arguments, repeat_seed, run_experiments


def args_for(tmp_path, *extra):
    return add_arguments(argparse.ArgumentParser()).parse_args(
        ["--results-dir", str(tmp_path), "--platforms", "kserve,seldon", *extra])


@pytest.mark.integration
def test_interrupted_run_resumes_without_repeating(testbed_up, tmp_path):
    calls = []

    def interrupted_after_two(ctx):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append((ctx.repeat, tuple(ctx.endpoints)))
        return parity_probe.run(ctx)

    spec = ExperimentSpec("parity", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_experiments([spec], args_for(tmp_path, "--repeats", "2", "--run-id", "r1"))
    meta = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert meta["experiments"]["parity"]["completed_units"] == ["r0/kserve", "r0/seldon"]
    assert sorted(p.name for p in (tmp_path / "r1" / "parity").iterdir()) == \
        ["parity-kserve-r0.json", "parity-seldon-r0.json"]

    resumed = []

    def counting(ctx):
        resumed.append((ctx.repeat, tuple(ctx.endpoints)))
        return parity_probe.run(ctx)

    assert run_experiments([ExperimentSpec("parity", counting)], args_for(tmp_path, "--resume", "r1")) == 0
    assert resumed == [(1, ("kserve",)), (1, ("seldon",))]
    meta = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert meta["state"] == "complete" and len(meta["resumed_at"]) == 1
    assert meta["artifact"]["sha256"] == testbed_up["model"]["sha256"]
    assert meta["versions"]["platforms"]["kserve"]["kserve"] == "0.20.0"
    assert meta["hardware"]["cores"] and meta["seeds"] == {"r0": repeat_seed(20261125, 0), "r1": repeat_seed(20261125, 1)}
    for path in (tmp_path / "r1" / "parity").iterdir():
        r = json.loads(path.read_text())
        assert r["verdict"] == "pass" and r["run_id"] == "r1" and len(r["measurements"]["latency_ms"]) == 50

    with pytest.raises(ExperimentError, match="seed 20261125 \\(now 5\\)"):
        run_experiments([ExperimentSpec("parity", counting)], args_for(tmp_path, "--resume", "r1", "--seed", "5"))


def test_unknown_probe_module_is_named(tmp_path):
    with pytest.raises(ExperimentError, match="probes.nonexistent.*not importable"):
        run_experiments([ExperimentSpec("x", "probes.nonexistent")], args_for(tmp_path))


def test_resume_of_missing_run_is_named(tmp_path):
    with pytest.raises(ExperimentError, match="no run 'gone'"):
        run_experiments([ExperimentSpec("parity", parity_probe.run)], args_for(tmp_path, "--resume", "gone"))


def test_repeat_seeds_are_hashed_not_added():
    seeds = [repeat_seed(base, r) for base in range(50) for r in range(5)]
    assert len(set(seeds)) == len(seeds)  # repeat 1 of seed 7 is not repeat 0 of seed 8
    assert repeat_seed(7, 1) == repeat_seed(7, 1) and 0 <= repeat_seed(7, 1) < 2**32
