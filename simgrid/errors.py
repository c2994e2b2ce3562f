"""The one error hierarchy of simgrid: user mistakes, data problems, power-flow trouble."""

from __future__ import annotations


class SimgridError(Exception):
    """Base class: anything simgrid raises on purpose."""


class ConfigError(SimgridError):
    """A user input (config, data file) is wrong; the message is one line naming where and why."""

    def __init__(self, source: str, key: str, value: object, allowed: str) -> None:
        self.source, self.key, self.value, self.allowed = source, key, value, allowed
        super().__init__(f"{source}: {key} = {value!r}: {allowed}")


class DataError(SimgridError):
    """A data file (network, profile) cannot be read or makes no sense."""


class PowerFlowError(SimgridError):
    """The power-flow engine cannot be built for this network."""


class OutputError(SimgridError):
    """An output cannot be written (folder gone, no permission, disk full); nothing is left."""
