"""/v1/substrate/nodes: cluster-scoped; every tenant reads, admins change."""

from vnstitch.api.routes._crud import resource_router
from vnstitch.domain.substrate import Node

router = resource_router(Node, "substrate/nodes", "substrate")
