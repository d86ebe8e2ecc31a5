"""/v1/sitestitches: stitches across sites, tenant-scoped (issue 14, docs/SITES.md). The spec is stored here;
the route managers negotiate it and record the outcome in their status.json."""

from vnstitch.api.routes._crud import resource_router
from vnstitch.domain.site import SiteStitch

router = resource_router(SiteStitch, "sitestitches", "sites")
