"""Constrained path computation and min-max-utilisation traffic engineering over the substrate."""

from vnstitch.pathing.paths import Arc, Availability, Path, PathFinder
from vnstitch.pathing.te import TESolution, TESolver, single_path_routing, solve_min_max_utilisation

__all__ = ["Arc", "Availability", "Path", "PathFinder", "TESolution", "TESolver",
           "single_path_routing", "solve_min_max_utilisation"]
