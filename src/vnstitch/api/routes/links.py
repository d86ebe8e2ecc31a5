"""/v1/substrate/links: cluster-scoped; every tenant reads, admins change."""

from vnstitch.api.routes._crud import resource_router
from vnstitch.domain.substrate import Link

router = resource_router(Link, "substrate/links", "substrate")
