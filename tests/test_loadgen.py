"""The load generator against real local servers: nginx and a tiny misbehaving HTTP server.

Every request must be accounted for: records == requests made, errors counted by kind and
included in the statistics. No timing assertions (2 shared cores).
"""

import socket
import socketserver
import threading
import time

import numpy as np
import pytest

from testbed.errors import EndpointUnreachable, NonLoopbackTarget
from testbed.loadgen import LoadSpec, run_load, summarize
from testbed.loadgen.nginx import static_nginx


class _Handler(socketserver.BaseRequestHandler):
    """Keep-alive HTTP/1.1 whose behaviour is chosen by the path."""

    def handle(self):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(buf) < length:
                buf += self.request.recv(65536)
            body, buf = buf[:length], buf[length:]
            path = head.split(b" ")[1].decode()
            if path == "/close":
                return  # drop the connection without answering
            if path == "/hang":
                time.sleep(1.0)
                return
            if path == "/slow":
                time.sleep(0.02)
            if path == "/chunked":
                self.request.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
                continue
            if path == "/echo-length":
                payload = str(len(body)).encode()
            else:
                payload = b"ok"
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))


@pytest.fixture(scope="module")
def tiny_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _accounted(summary):
    kinds = sum(summary["error_kinds"].values())
    non2xx = sum(c for s, c in summary["status_counts"].items() if not s.startswith("2"))
    assert summary["ok"] + kinds + non2xx == summary["requests"]
    assert summary["errors"] == kinds + non2xx


def test_nginx_closed_loop_every_request_recorded():
    with static_nginx() as base:
        run = run_load(LoadSpec(url=base + "/", concurrency=8, duration_s=30, max_requests=3000))
        s = summarize(run)
        assert s["requests"] == 3000 and s["ok"] == 3000 and s["errors"] == 0
        assert s["latency_s"]["p50_ci"][0] <= s["latency_s"]["p50"] <= s["latency_s"]["p50_ci"][1]
        errs = summarize(run_load(LoadSpec(url=base + "/status/500", concurrency=4, duration_s=30,
                                           max_requests=200)))
        assert errs["requests"] == 200 and errs["errors"] == 200 and errs["status_counts"] == {"500": 200}
        assert errs["error_rate"] == 1.0 and errs["throughput_rps"] == 0.0
        assert errs["latency_s"]["n"] == 200  # failed requests stay in the latency statistics
        _accounted(errs)


def test_post_body_and_chunked_responses(tiny_server):
    body = b'{"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}'
    s = summarize(run_load(LoadSpec(url=tiny_server + "/echo-length", method="POST", body=body, concurrency=2,
                                    duration_s=30, max_requests=50)))
    assert s["ok"] == 50
    s = summarize(run_load(LoadSpec(url=tiny_server + "/chunked", concurrency=2, duration_s=30, max_requests=50)))
    assert s["ok"] == 50 and s["errors"] == 0


def test_dropped_connections_and_timeouts_are_counted(tiny_server):
    s = summarize(run_load(LoadSpec(url=tiny_server + "/close", concurrency=2, duration_s=30, max_requests=40)))
    assert s["requests"] == 40 and s["error_kinds"] == {"closed": 40}
    _accounted(s)
    s = summarize(run_load(LoadSpec(url=tiny_server + "/hang", concurrency=2, duration_s=30, max_requests=4,
                                    timeout_s=0.2)))
    assert s["requests"] == 4 and s["error_kinds"] == {"timeout": 4}
    assert s["latency_s"]["p50"] >= 0.2


def test_open_loop_that_cannot_be_sustained_says_so(tiny_server):
    # 2 connections to a 20 ms server carry at most ~100 req/s; ask for 400 req/s for 1 s.
    run = run_load(LoadSpec(url=tiny_server + "/slow", rate=400, concurrency=2, duration_s=1.0, timeout_s=5))
    s = summarize(run)
    assert not s["sustained"] and s["not_sustained_because"]
    assert s["requests"] >= 380  # every scheduled request is recorded: answered, failed or not sent
    _accounted(s)
    assert s["throughput_rps"] < 200  # the achieved rate is reported, never the target
    # open-loop latency counts from when the request was due: queueing shows
    assert np.nanmax(run.latency_s) > 0.1


def test_open_loop_at_a_sustainable_rate(tiny_server):
    s = summarize(run_load(LoadSpec(url=tiny_server + "/", rate=100, concurrency=4, duration_s=1.0)))
    assert s["sustained"], s["not_sustained_because"]
    assert 95 <= s["requests"] <= 101 and s["errors"] == 0


def test_bad_targets_are_refused_before_any_load():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(EndpointUnreachable):
            run_load(LoadSpec(url=f"http://127.0.0.1:{port}/", max_requests=10, duration_s=1))
    with pytest.raises(NonLoopbackTarget):
        run_load(LoadSpec(url="http://192.0.2.1:80/", max_requests=10, duration_s=1))  # TEST-NET-1, never contacted
