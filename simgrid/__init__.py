"""simgrid: co-simulation of AI / data-center demand shocks on power grids."""

__version__ = "0.1.0"
