"""Pure parts of the formats and ease-of-deployment probes (the servers they start are exercised by
experiments/formats.py and experiments/ease.py)."""

from probes.ease import count_user_lines, meaningful_lines
from probes.formats import compare, labels_from


def test_labels_from_labels_and_probabilities():
    assert labels_from({"outputs": [{"data": [2, 0, 1], "shape": [3]}]}) == [2, 0, 1]
    assert labels_from({"outputs": [{"data": [0.1, 0.7, 0.2, 0.8, 0.1, 0.1], "shape": [2, 3]}]}) == [1, 0]
    assert labels_from({"outputs": [{"data": [1.0, 2.0], "shape": [2, 1]}]}) == [1, 2]


def test_compare_parity():
    assert compare([0, 1, 2], [0, 1, 2])["parity"] is True
    r = compare([0, 1, 2, 2], [0, 2, 2, 1])
    assert (r["parity"], r["mismatches"], r["agreement"]) == (False, [1, 3], 0.5)
    assert compare([0, 1], [0])["error"] == "1 labels for 2 rows"
    assert compare([0], "HTTP 500: boom") == {"parity": False, "error": "HTTP 500: boom", "mismatches": None}


def test_meaningful_lines_skip_docstrings_comments_blanks():
    code = '"""Module doc\nover two lines."""\n\nimport os  # why\n\n\ndef f():\n    """Doc."""\n    # note\n    return (1 +\n            2)\n'
    assert meaningful_lines(code, "code") == 4  # import, def, return over two lines
    assert meaningful_lines('{\n  "a": 1,\n\n  "b": 2\n}\n', "config") == 4


def test_user_lines_of_code_platforms_count_real_files(tmp_path):
    n, files = count_user_lines("kserve", tmp_path, "m")
    assert 20 < n < 60 and files[0]["file"].endswith("kserve_server.py")
    (tmp_path / "seldon" / "models" / "m").mkdir(parents=True)
    (tmp_path / "seldon" / "models" / "settings.json").write_text('{\n  "http_port": 1\n}\n')
    (tmp_path / "seldon" / "models" / "m" / "model-settings.json").write_text('{\n  "name": "m",\n  "x": 2\n}\n')
    assert count_user_lines("seldon", tmp_path, "m")[0] == 7


SLEEPER = ["-c", "import time; time.sleep(120)"]


def test_a_killed_runs_bentoml_format_workers_are_stopped_by_the_next_run(tmp_path):
    """BentoML's circus puts every worker in a session of its own: after a killed formats run the recorded
    server session may be gone while its workers live on, carrying the marker of their working directory."""
    import sys

    from deployers import bentoml
    from deployers import formats as fmt_servers
    from testbed.backends.local import processes

    root = tmp_path / "formats-run"
    workdir = root / "bentoml"
    workdir.mkdir(parents=True)
    leader = processes.start([sys.executable, *SLEEPER], workdir / "leader.log", cwd=workdir)
    worker = processes.start([sys.executable, *SLEEPER], workdir / "worker.log", cwd=workdir,
                             env={bentoml.MARKER: str(workdir / "formats-marker")})
    stranger = processes.start([sys.executable, *SLEEPER], workdir / "other.log", cwd=workdir,
                               env={bentoml.MARKER: str(tmp_path / "elsewhere" / "formats-marker")})
    try:
        fmt_servers.record_pid(root, "bentoml", leader)
        processes.stop_session(leader, grace_s=1)  # the killed run's server leader is gone, its worker is not
        assert bentoml.BentoMLFormats.leftovers(workdir) == [worker]
        stopped = fmt_servers.stop_leftovers(root)
        assert stopped == [f"bentoml (process {worker}, outside the server's session)"]
        assert processes.session_members(worker) == [] and not (root / "pids.json").exists()
        assert processes.session_members(stranger) == [stranger]  # another directory's worker: not ours
    finally:
        for pid in (leader, worker, stranger):
            processes.stop_session(pid, grace_s=1)


def test_a_format_server_interrupted_while_starting_is_stopped(tmp_path, monkeypatch):
    """An interrupt while the server is not ready yet reaches no atexit list of started servers: start() itself
    stops what it started and forgets its pid."""
    import sys

    import pytest

    from deployers import formats as fmt_servers
    from testbed.backends.local import processes

    class NeverReady(fmt_servers.FormatServer):
        platform = "never-ready"
        env = None

        def command(self, python, http_port, workdir, model_dir, n_features):
            return [sys.executable, *SLEEPER]

    monkeypatch.setattr(fmt_servers.envs, "ensure", lambda spec, envs_dir, say: tmp_path)
    monkeypatch.setattr(fmt_servers.envs, "installed_versions", lambda env_dir, names: {})

    def interrupt(client, url, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fmt_servers.httpx.Client, "get", interrupt)  # Ctrl-C during the first readiness check
    server = NeverReady()
    count = processes.started_count()
    with pytest.raises(KeyboardInterrupt):
        server.start(tmp_path / "envs", tmp_path / "formats-run" / "never-ready", tmp_path, 7, timeout_s=600)
    [pid] = processes.started_since(count)
    assert processes.session_members(pid) == [] and server.pid is None
    assert fmt_servers.json.loads((tmp_path / "formats-run" / "pids.json").read_text()) == {}
