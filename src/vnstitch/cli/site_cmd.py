"""`vnstitch route-manager`: run one site's route manager next to its GoBGP speaker (docs/SITES.md)."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `route-manager` command to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "route-manager", help="run a site's route manager: advertise its VNIDs over BGP EVPN, program its VTEP",
        description="Starts gobgpd in the site's namespace (listening on the Site's routeManagerAddress, eBGP "
                    "full mesh with the other Sites), advertises every VNID the site serves (a member on one of its "
                    "nodes) as an EVPN type-3 route with its VTEP and offered bandwidth, and programs VXLAN flood "
                    "entries for the VNIDs other sites advertise too. SiteStitches from its networks to networks "
                    "only other sites serve are negotiated (candidates ranked by AS path, latency, bandwidth), "
                    "consented to by the owning site's route manager (its consent API) and carried by WireGuard. Its view is FILE (-f), re-read when it "
                    "changes, or without -f the state store (--store, every tenant's Sites and VirtualNetworks, "
                    "re-read when its revision moves: what `vnstitch apply` or the API writes reaches it); a bad "
                    "view is logged and the last good one kept. SIGTERM withdraws the routes and stops the "
                    "speaker. Needs root and gobgpd (Debian package gobgpd).")
    parser.add_argument("--site", required=True, help="this site's name (a Site of its view: FILE or the store; "
                                                       "required)")
    parser.add_argument("-f", "--file", dest="config", default="",
                        help="resource file with every Site and the VirtualNetworks (default: none, the state "
                             "store given by --store or $VNSTITCH_STORE)")
    parser.add_argument("--netns", required=True,
                        help="network namespace of the site's border node: speaker and VTEP run there (required)")
    parser.add_argument("--state-dir", required=True,
                        help="directory for gobgpd's config, socket, pid, log and status.json (required)")
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="seconds between checks of FILE and the speaker, no fork (default: 0.05); RIB "
                             "changes wake the route manager at once")
    parser.add_argument("--resync-interval", type=float, default=5.0,
                        help="seconds after which a full pass runs even when nothing was seen to change "
                             "(default: 5; a pass costs about 0.1 s of CPU per 250 VNIDs served)")
    parser.add_argument("--kernel-resync", type=float, default=30.0,
                        help="seconds between reads of the whole VTEP (links, flood entries) from the kernel; in "
                             "between a pass works from the last read and its own changes, so a device removed "
                             "by hand is put back within this time (default: 30)")
    parser.add_argument("--hold-time", type=int, default=3,
                        help="BGP hold time in seconds, 0 or ≥ 3 (default: 3)")
    parser.add_argument("--keepalive", type=int, default=1, help="BGP keepalive interval in seconds (default: 1)")
    parser.add_argument("--connect-retry", type=int, default=1,
                        help="seconds between BGP connection attempts (default: 1)")
    parser.add_argument("--restart-delay", type=float, default=1.0,
                        help="seconds to wait before restarting a speaker that died (default: 1)")
    parser.add_argument("--consent-port", type=int, default=7179,
                        help="TCP port of the consent API on the route-manager address, where other sites ask "
                             "for stitches to this site's networks (default: 7179; the same at every site)")
    parser.add_argument("--consent-lease", type=float, default=30.0,
                        help="seconds a consent given to another site lasts unless it asks again (it does each "
                             "pass); then its tunnel end here is removed (default: 30)")
    parser.set_defaults(func=cmd_route_manager)
    return parser


def cmd_route_manager(args) -> int:
    import logging

    from vnstitch.errors import InvalidInput
    from vnstitch.sites.gobgp import Timers
    from vnstitch.sites.route_manager import RouteManager

    if args.hold_time != 0 and args.hold_time < 3:
        raise InvalidInput("a BGP hold time is 0 or at least 3 seconds (RFC 4271)", field="--hold-time")
    if not 1 <= args.consent_port <= 65535:
        raise InvalidInput("a TCP port is 1..65535", field="--consent-port")
    if args.consent_lease <= 2 * args.resync_interval:
        raise InvalidInput(f"must be more than twice --resync-interval ({args.resync_interval:g} s): a consent is "
                           "renewed once a pass", field="--consent-lease")
    for flag in ("poll_interval", "resync_interval", "kernel_resync", "consent_lease"):
        if getattr(args, flag) <= 0:
            raise InvalidInput("must be > 0", field="--" + flag.replace("_", "-"))
    logger = logging.getLogger("vnstitch.route_manager")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    source = None
    if not args.config:   # the store's Sites and VirtualNetworks
        from vnstitch.cli.main import store_url
        from vnstitch.sites.route_manager import StoreSource

        source = StoreSource(store_url(args))
    manager = RouteManager(args.site, args.config, args.netns, args.state_dir,
                           Timers(args.hold_time, args.keepalive, args.connect_retry),
                           poll_interval_s=args.poll_interval, resync_interval_s=args.resync_interval,
                           restart_delay_s=args.restart_delay, kernel_resync_s=args.kernel_resync, source=source,
                           consent_port=args.consent_port, consent_lease_s=args.consent_lease)
    manager.install_signal_handlers()
    manager.run()
    return 0
