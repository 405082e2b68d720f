"""Platform registry: one module per platform, each exporting PLATFORM (testbed/platforms.py).

Adding a platform is one line in REGISTERED (README: "Adding a platform").
"""

from __future__ import annotations

from testbed.endpoint import Endpoint
from testbed.errors import UnknownPlatform
from testbed.platforms import Platform, WireProtocol

from deployers import bentoml, kserve, mlflow, rayserve, seldon, torchserve

REGISTERED = (
    kserve.PLATFORM,
    seldon.PLATFORM,
    rayserve.PLATFORM,
    bentoml.PLATFORM,
    mlflow.PLATFORM,
    torchserve.PLATFORM,
)

PLATFORMS: dict[str, Platform] = {p.name: p for p in REGISTERED}
"""Name -> Platform, in registration order (the order of `up`, status and the report)."""

ALL = "all"
"""`--platforms all`: every registered platform the backend offers."""


def get_platform(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise UnknownPlatform(name, sorted(PLATFORMS)) from None


def protocol_of(endpoint: Endpoint) -> WireProtocol:
    """How a probe reaches the endpoint's platform: its PLATFORM.protocol (testbed.platforms.WireProtocol)."""
    return get_platform(endpoint.platform).protocol


def offered_on(backend: str) -> tuple[str, ...]:
    """The platforms a backend offers: those with a Deployment class for it."""
    return tuple(n for n, p in PLATFORMS.items() if p.offered_on(backend))


def default_platforms(backend: str | None = None) -> tuple[str, ...]:
    """What `up` starts without --platforms: the platforms marked default (that `backend` offers)."""
    return tuple(n for n, p in PLATFORMS.items() if p.default and (backend is None or p.offered_on(backend)))


def parse_platforms(text: str | None, backend: str | None = None) -> tuple[str, ...]:
    """'kserve,seldon' -> ('kserve', 'seldon'); None -> the defaults; 'all' -> every platform (that the
    backend offers). Every unknown name, and every name the backend does not offer, is reported at once."""
    if not text:
        return default_platforms(backend)
    if text.strip() == ALL:
        return offered_on(backend) if backend else tuple(PLATFORMS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown:
        raise UnknownPlatform(", ".join(unknown), sorted(PLATFORMS))
    if backend:
        missing = [n for n in names if not PLATFORMS[n].offered_on(backend)]
        if missing:
            raise UnknownPlatform(", ".join(missing), list(offered_on(backend)), backend=backend)
    return names
