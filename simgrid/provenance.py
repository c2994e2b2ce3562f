"""What a result on disk was computed from, so that it is reused only when all of it is unchanged.

A long run's blocks and a stress test's episodes are picked up again when a command is run
once more. They are reused only when the config's text, the content of every file the config
reads (network, load profiles, catalogue, allocation, scenario set), simgrid's version and the
versions of the libraries that compute the numbers are all the same as now. Paths are not
enough: a file edited in place keeps its name. Anything else is refused with one line that
says what changed, and `--restart` discards the old results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from simgrid.config import RunConfig
from simgrid.errors import ConfigError

_PREFIX = "input_"
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (a scenario set can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def input_files(cfg: RunConfig) -> dict[str, Path]:
    """Every file a run config reads, by role."""
    files: dict[str, Path | str | None] = {
        "network_file": cfg.network.file,
        "load_profile": cfg.network.load_profile_file,
        "catalogue": cfg.dispatch.catalogue,
        "allocation": cfg.dispatch.allocation_file,
        "scenarios": cfg.scenario.file if cfg.scenario is not None else None,
    }
    for c in cfg.campuses:
        files[f"campus_{c.name}_profile"] = c.profile_file
    return {role: Path(p) for role, p in files.items() if p is not None}


@dataclass(frozen=True)
class InputKey:
    """Named fingerprints of what a result depends on, stored as `input_*` attributes."""

    entries: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, cfg: RunConfig, versions: Mapping[str, str], **extra: object) -> InputKey:
        """The config's text and files, the package `versions`, and `extra` settings."""
        entries = [("config_sha256", cfg.text_sha256)]
        entries += [(f"{role}_sha256", file_sha256(p)) for role, p in input_files(cfg).items()]
        entries += [(f"version_{name}", str(v)) for name, v in versions.items()]
        entries += [(name, str(v)) for name, v in extra.items()]
        return cls(tuple(entries))

    def attrs(self) -> dict[str, str]:
        return {_PREFIX + name: value for name, value in self.entries}

    def differs(self, attrs: Mapping[str, object]) -> str | None:
        """What in `attrs` (a file's attributes) is not this key, or None if nothing."""
        stored = {k[len(_PREFIX) :]: str(v) for k, v in attrs.items() if k.startswith(_PREFIX)}
        for name, value in self.entries:
            if name not in stored:
                return f"{name} is not recorded (written by another simgrid version)"
            if stored[name] != value:
                return f"{name} was {_short(stored[name])}, now {_short(value)}"
        extra = sorted(set(stored) - {name for name, _ in self.entries})
        return f"{extra[0]} is recorded but no longer an input" if extra else None

    def check(self, attrs: Mapping[str, object], path: Path, what: str) -> None:
        """Refuse to reuse the result in `path` unless it was computed from these inputs."""
        why = self.differs(attrs)
        if why is not None:
            raise ConfigError(
                str(path),
                what,
                "not reused",
                f"computed from other inputs ({why}); run again with --restart to discard "
                "the earlier results, or write to another --out",
            )


def _short(value: str) -> str:
    return value[:12] + "..." if len(value) > 16 else repr(value)
