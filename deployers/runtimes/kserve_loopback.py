"""kserve.ModelServer bound to loopback.

KServe 0.20.0 offers no way to choose the address of its REST server: `RESTServer` builds its
`uvicorn.Config` with host="0.0.0.0" (kserve/protocol/rest/server.py:94), and neither `ModelServer`'s
parameters nor its command-line flags nor an environment variable carry a host. `ModelServer.start`
creates the REST server, then calls `setup_event_loop()` before anything serves; uvicorn reads
`config.host` only when it binds, so this subclass moves the server to loopback at that point. It fails
rather than serve on every interface when a KServe version no longer has the server there.
"""

from importlib.metadata import version

import kserve

HOST = "127.0.0.1"


class LoopbackModelServer(kserve.ModelServer):
    def setup_event_loop(self):
        super().setup_event_loop()
        multiprocess = getattr(self, "_rest_multiprocess_server", None)
        rest = getattr(self, "_rest_server", None) or getattr(multiprocess, "_rest_server", None)
        config = getattr(rest, "config", None)
        if config is None or not hasattr(config, "host"):
            raise RuntimeError(f"kserve {version('kserve')}: ModelServer has no REST server config to bind to "
                               f"{HOST} before it serves; refusing to listen on every interface")
        config.host = HOST
