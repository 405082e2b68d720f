"""Which model formats a platform serves on the path `up` starts, how it loads each, and what it cannot serve
as given: part of each platform's description (deployers/<platform>.py `SERVING`).

`up --model` asks every platform: one that cannot serve the artifact is skipped, with a message naming the
platform, the format and what would work; the others get a runtime environment with the format's library
added to their own pins (`env_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from testbed.backends.local.envs import EnvSpec

if TYPE_CHECKING:
    from testbed.artifact import Artifact


@dataclass(frozen=True)
class FormatSupport:
    """How a platform serves one model format."""

    loader: str
    """What loads the file, in words (the runtime class or our code), recorded in status and results."""

    mechanism: str
    """"native" (the platform's own runtime for the format) or "user code" (our code in its extension point)."""

    packages: tuple[str, ...] = ()
    """Pins the platform's runtime environment needs besides its own for this format (the format's library)."""

    refuse: Callable[["Artifact"], str | None] | None = None
    """A model of this format the platform loads but cannot serve as the testbed needs (e.g. answers probabilities
    where labels are compared): the reason, naming what would work; None when it can."""


@dataclass(frozen=True)
class ModelServing:
    formats: dict[str, FormatSupport]
    """Format (testbed/modelfile.py FORMATS) -> how the platform serves it."""

    unsupported: dict[str, str] = field(default_factory=dict)
    """Format -> why the platform cannot serve it here, and what would work."""

    frame_packages: tuple[str, ...] = ()
    """Pins the environment needs for a model that takes a DataFrame (pandas), where the runtime does not depend
    on it already (KServe and MLServer do)."""

    shared_env: str | None = None
    """When set, one environment serves every format (`<platform>-<shared_env>`: the platform's pins plus every
    format's library and frame_packages) instead of one per format: for a runtime whose own environment is heavy
    (TorchServe's torch), where a copy per format would cost gigabytes and minutes each."""

    def support(self, artifact: "Artifact") -> FormatSupport | None:
        return self.formats.get(artifact.format)

    def refusal(self, platform: str, artifact: "Artifact") -> str | None:
        """Why `platform` cannot serve this artifact (one paragraph: platform, format, what would work), or None."""
        fmt = artifact.format
        if fmt in self.unsupported:
            return f"{platform} cannot serve the {fmt} model {artifact.name}: {self.unsupported[fmt]}"
        support = self.formats.get(fmt)
        if support is None:
            served = ", ".join(self.formats) or "none"
            return f"{platform} has no loader for {fmt} models here (it serves: {served})"
        reason = support.refuse(artifact) if support.refuse else None
        return f"{platform} cannot serve the {fmt} model {artifact.name} as given: {reason}" if reason else None

    def env_for(self, base: EnvSpec, artifact: "Artifact") -> EnvSpec:
        """The platform's environment for this artifact: its own pins plus the format's library."""
        if self.shared_env:
            wanted = [p for s in self.formats.values() for p in s.packages] + list(self.frame_packages)
            extra = tuple(dict.fromkeys(p for p in wanted if p not in base.requirements))
            return EnvSpec(f"{base.name}-{self.shared_env}", tuple(base.requirements) + extra, tuple(base.no_deps)) \
                if extra else base
        support = self.formats.get(artifact.format)
        extra = tuple(p for p in (support.packages if support else ()) if p not in base.requirements)
        if artifact.metadata.get("input") == "frame":
            extra += tuple(p for p in self.frame_packages if p not in base.requirements + extra)
        if not extra:
            return base
        suffix = artifact.format if artifact.format != "sklearn" else "frame"
        return EnvSpec(f"{base.name}-{suffix}", tuple(base.requirements) + extra, tuple(base.no_deps))

    def describe(self, artifact: "Artifact") -> dict:
        support = self.formats.get(artifact.format)
        return {"format": artifact.format, "loader": support.loader if support else None,
                "mechanism": support.mechanism if support else "none"}
