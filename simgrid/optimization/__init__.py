"""Optimisation layer: the Stage-II dispatch MILP (and later Stage-I); the only pyomo user."""
