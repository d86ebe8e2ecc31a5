"""/v1/virtualnetworks: tenant-owned virtual networks."""

from vnstitch.api.routes._crud import resource_router
from vnstitch.domain.vnet import VirtualNetwork

router = resource_router(VirtualNetwork, "virtualnetworks", "virtualnetworks")
