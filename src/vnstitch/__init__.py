"""vnstitch: forecast traffic between virtual networks and stitch them before congestion."""

__version__ = "0.1.0"
