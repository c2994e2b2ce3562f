"""Flexible-unit families as plug-ins (see base.py): the registry everything loops over.

A new family is one module of this package and one line below. Their order is the order of
their units in every model, state and plan.
"""

from __future__ import annotations

from simgrid.units import backup_gen, dr, fast_gen, storage
from simgrid.units.base import Family, Module

FAMILIES: tuple[Family, ...] = (
    storage.FAMILY,
    fast_gen.FAMILY,
    dr.FAMILY,
    backup_gen.FAMILY,
)


def family_of(module_type: str) -> Family:
    """The family of a catalogue module type."""
    return next(f for f in FAMILIES if module_type in f.types)


def catalogue_types() -> tuple[str, ...]:
    """Every catalogue module type, in the registry's order."""
    return tuple(t for f in FAMILIES for t in f.types)


__all__ = ["FAMILIES", "Family", "Module", "catalogue_types", "family_of"]
