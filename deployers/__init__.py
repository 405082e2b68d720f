"""Platform registry: one module per platform, each exporting PLATFORM."""

from __future__ import annotations

from testbed.errors import UnknownPlatform
from testbed.platforms import Platform

from deployers import kserve, rayserve, seldon

PLATFORMS: dict[str, Platform] = {p.name: p for p in (kserve.PLATFORM, seldon.PLATFORM, rayserve.PLATFORM)}


def get_platform(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise UnknownPlatform(name, sorted(PLATFORMS)) from None


def parse_platforms(text: str | None) -> tuple[str, ...]:
    """'kserve,seldon' -> ('kserve', 'seldon'); every unknown name is reported at once."""
    if not text:
        return tuple(PLATFORMS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown:
        raise UnknownPlatform(", ".join(unknown), sorted(PLATFORMS))
    return names
