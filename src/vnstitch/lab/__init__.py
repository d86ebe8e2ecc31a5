"""A lab of network namespaces that stands in for substrate nodes and VMs (see docs/DATAPLANE.md)."""
