"""Scenario reduction, and the scale of the scenario distance of the Wasserstein ambiguity set.

Distance: Euclidean (L2) norm between scenarios' shock-feature vectors (`FEATURES` in
scenarioset), each feature divided by its standard deviation over the full generated set
(features with zero spread are ignored). Only that scale is stored with the set
(`feature_scale(feature)`), so reduced sets and later sets measure distance the same way; the
scenario-by-scenario matrix itself is never stored (it is quadratic in the set size: 80 GB for
100,000 scenarios) but computed where it is used, by the Stage-I planner
(`simgrid.allocate._distance`) on its tens of scenarios, for at most `MAX_DISTANCE_SCENARIOS`.

Reduction: k-means++ clustering of the standardised features (scipy); each cluster is
represented by its member nearest the centroid (a medoid: a real, regenerable scenario)
carrying the cluster's probability mass. Linear in the set size in memory and time (for a
fixed number of clusters). Measured on the shipped 33-bus spec (N = 2000, S = 100): feature
means within 5 %, the 95th percentile of the peak ramp within 5 %; rare features (line
outages) only within 25 % (tests/test_scenarios.py).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.cluster.vq import kmeans2

from simgrid.errors import ConfigError

# Most scenarios the planner takes a scenario-by-scenario distance of: 128 MB in float64, and
# the Wasserstein ambiguity set adds S^2 rows to the MILP (16 M here). Reduce larger sets.
MAX_DISTANCE_SCENARIOS = 4000

_SCALE_ATTRS = {
    "units": "as the feature",
    "long_name": "divisor of each feature in the scenario distance (inf: unused)",
}


def feature_scale(ds: xr.Dataset) -> np.ndarray:
    if "feature_scale" in ds:
        return ds["feature_scale"].to_numpy()
    std = ds["features"].to_numpy().std(axis=0)
    return np.where(std > 0, std, np.inf)  # inf: a constant feature adds no distance


def standardised(ds: xr.Dataset) -> np.ndarray:
    """Features over `feature_scale`: the scenario distance is the L2 norm of differences."""
    return ds["features"].to_numpy() / feature_scale(ds)


def with_distance(ds: xr.Dataset) -> xr.Dataset:
    """The set with `feature_scale(feature)`, what the scenario distance needs.

    No `distance(scenario, scenario_to)` matrix: one left by an older version is dropped.
    """
    scale = feature_scale(ds)
    out = ds.drop_vars("distance", errors="ignore")
    return out.assign(feature_scale=xr.Variable("feature", scale, _SCALE_ATTRS))


def reduce_set(ds: xr.Dataset, n_keep: int, seed: int) -> xr.Dataset:
    """Keep `n_keep` representative scenarios with probabilities summing to one.

    Each representative carries its cluster's probability mass. The distance scale stays the
    full set's, so the reduced set's distances are comparable with the full set's.
    """
    n = ds.sizes["scenario"]
    if not 1 <= n_keep <= n:
        raise ConfigError("--reduce", "S", n_keep, f"must be between 1 and the set size {n}")
    scale = feature_scale(ds)
    z = ds["features"].to_numpy() / scale  # a constant feature (scale inf) becomes 0
    prob = ds["probability"].to_numpy()
    if n_keep < n:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
        centroids, labels = kmeans2(z, n_keep, minit="++", seed=rng, iter=50)
    else:
        centroids, labels = z, np.arange(n)
    # medoid of each cluster: sort by (cluster, distance to its centroid, index) and take the
    # first of each cluster -- O(N log N), not one pass over all N per cluster
    d2 = ((z - centroids[labels]) ** 2).sum(axis=1)
    order = np.lexsort((d2, labels))
    first = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    keep = order[first]  # k-means may leave a cluster empty: then fewer are kept
    mass = np.bincount(labels, weights=prob, minlength=len(centroids))[labels[keep]]
    by_index = np.argsort(keep)
    keep, mass = keep[by_index], mass[by_index]
    out = ds.drop_vars(["distance", "feature_scale"], errors="ignore").isel(scenario=keep)
    out = out.assign_coords(scenario=("scenario", np.arange(len(keep)), ds["scenario"].attrs))
    out["probability"] = xr.Variable("scenario", mass / mass.sum(), ds["probability"].attrs)
    out["feature_scale"] = xr.Variable("feature", scale, _SCALE_ATTRS)
    out.attrs.update(reduction=f"k-means++ medoids: {len(keep)} of {n}", n_full=n)
    return out
