"""Sites over BGP EVPN (issue 14): each site's route manager drives a GoBGP speaker (docs/SITES.md)."""
