"""Shared helpers. Networks are immutable records, so one build per parameter set is shared."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import pytest

from simgrid.config import NetworkConfig, parse_config
from simgrid.network import Network, build_network

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def network(scale_to_peak_mw: float | None = None) -> Network:
    return build_network(NetworkConfig(scale_to_peak_mw=scale_to_peak_mw))


def config_from_toml(text: str, tmp_path: Path | None = None, name: str = "test.toml"):
    """Parse a TOML snippet as a run config (written to tmp_path when given)."""
    import tomllib

    text = textwrap.dedent(text)
    base = tmp_path if tmp_path is not None else Path(".")
    return parse_config(tomllib.loads(text), source=str(base / name), text=text, base_dir=base)


MINIMAL = """
[run]
name = "t"
horizon_s = 3600
dt_s = 60
[network]
case = "case33bw"
load_profile = "flat"
[upstream]
band_mw = 0.1
ramp_mw_per_min = 0.05
"""


@pytest.fixture
def minimal_toml() -> str:
    return MINIMAL


@pytest.fixture(autouse=True, scope="session")
def _case33bw_once():
    """pandapower builds case33bw from JSON on every call (about a second); the tests build
    it hundreds of times, so they share one copy (deep-copied per call, as simgrid mutates
    what it gets)."""
    import copy

    import pandapower.networks as pn

    original = pn.case33bw
    built = original()
    pn.case33bw = lambda: copy.deepcopy(built)
    yield
    pn.case33bw = original
