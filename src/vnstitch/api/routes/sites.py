"""/v1/sites: cluster-scoped; every tenant reads (which sites exist, where their route managers are),
admins change (issue 14, docs/SITES.md)."""

from vnstitch.api.routes._crud import resource_router
from vnstitch.domain.site import Site

router = resource_router(Site, "sites", "sites")
