"""GoBGP's gRPC API, for what the CLI does one fork at a time: announcing and withdrawing many routes.

The client code is generated, not written: gobgpd's own API definitions (`gobgp.proto`, `attribute.proto`,
`capability.proto`, from Debian's golang-github-osrg-gobgp-dev of the same version as gobgpd, which
scripts/system-deps.sh unpacks into /usr/local/share/vnstitch/gobgp-api) are compiled by grpcio-tools on
first use into the user's cache, keyed by their content, so the stubs always match the speaker's API.
`gobgp global rib add` costs a fork and 11 ms of CPU per route (1,000 VNIDs: 12 s); one AddPathStream call
carries them all (1,000 routes: 0.1 s).
"""

from __future__ import annotations

import hashlib
import importlib
import ipaddress
import os
import shutil
import sys
import tempfile
import threading

from vnstitch.errors import DriverError

PROTO_FILES = ("gobgp.proto", "attribute.proto", "capability.proto")
PROTO_DIRS = ("/usr/share/gocode/src/github.com/osrg/gobgp/api",   # golang-github-osrg-gobgp-dev installed
              "/usr/local/share/vnstitch/gobgp-api")               # unpacked by scripts/system-deps.sh
PMSI_INGRESS_REPLICATION = 6    # RFC 6514 §5: tunnel type 6
ENCAP_VXLAN = 8                 # RFC 9012 tunnel type 8
ORIGIN_INCOMPLETE = 2           # what `gobgp global rib add` sets
EVPN_ROUTE_TYPES = {"EVPNEthernetAutoDiscoveryRoute": 1, "EVPNMACIPAdvertisementRoute": 2,
                    "EVPNEthernetSegmentRoute": 4, "EVPNIPPrefixRoute": 5, "EVPNIPMSIRoute": 9}
BATCH = 500                     # paths per message of the stream (gRPC's 4 MiB default: ~300 B a path)

_lock = threading.Lock()
_modules: tuple | None = None


class ApiUnimplemented(DriverError):
    """gobgpd answered UNIMPLEMENTED: its API lacks a call these stubs have (another GoBGP version)."""


def proto_dir() -> str:
    """The directory with gobgpd's .proto files: $VNSTITCH_GOBGP_PROTO, else the places listed above."""
    candidates = [os.environ["VNSTITCH_GOBGP_PROTO"]] if os.environ.get("VNSTITCH_GOBGP_PROTO") else list(PROTO_DIRS)
    for directory in candidates:
        if all(os.path.isfile(os.path.join(directory, name)) for name in PROTO_FILES):
            return directory
    raise DriverError(f"GoBGP's API definitions ({', '.join(PROTO_FILES)}) are in none of {', '.join(candidates)}: "
                      "run scripts/system-deps.sh (it unpacks them from golang-github-osrg-gobgp-dev) or set "
                      "VNSTITCH_GOBGP_PROTO to their directory")


def _cache_root() -> str:
    from platformdirs import user_cache_dir

    return os.environ.get("VNSTITCH_CACHE_DIR") or user_cache_dir("vnstitch")


def load() -> tuple:
    """(gobgp_pb2, attribute_pb2, gobgp_pb2_grpc, Any), compiled once per set of .proto files."""
    global _modules
    with _lock:
        if _modules is not None:
            return _modules
        try:
            import grpc  # noqa: F401
            from google.protobuf.any_pb2 import Any
            from grpc_tools import protoc
        except ImportError as exc:
            raise DriverError(f"GoBGP's gRPC API needs grpcio, grpcio-tools and protobuf ({exc.name} is missing): "
                              "pip install 'vnstitch[sites]'") from None
        source = proto_dir()
        import google.protobuf
        import grpc_tools

        digest = hashlib.sha256(f"{google.protobuf.__version__} {getattr(grpc_tools, '__version__', '')}".encode())
        for name in PROTO_FILES:
            with open(os.path.join(source, name), "rb") as handle:
                digest.update(handle.read())
        target = os.path.join(_cache_root(), f"gobgp-api-{digest.hexdigest()[:16]}")
        if not os.path.isfile(os.path.join(target, "gobgp_pb2_grpc.py")):
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                work = tempfile.mkdtemp(prefix=".gobgp-api-", dir=os.path.dirname(target))
            except OSError as exc:
                raise DriverError(f"cannot write the GoBGP API stubs under {os.path.dirname(target)}: "
                                  f"{exc.strerror or exc} (set VNSTITCH_CACHE_DIR)") from None
            try:
                include = os.path.join(os.path.dirname(protoc.__file__), "_proto")   # google/protobuf/*.proto
                # python -m grpc_tools.protoc -I SOURCE -I INCLUDE --python_out=W --grpc_python_out=W *.proto
                status = protoc.main(["protoc", f"-I{source}", f"-I{include}", f"--python_out={work}",
                                      f"--grpc_python_out={work}", *(os.path.join(source, n) for n in PROTO_FILES)])
                if status != 0:
                    raise DriverError(f"grpc_tools.protoc could not compile GoBGP's API in {source} (status {status})")
                try:
                    os.rename(work, target)
                except OSError:       # another process made it first
                    pass
            finally:
                shutil.rmtree(work, ignore_errors=True)
        if target not in sys.path:
            sys.path.append(target)   # the generated gobgp_pb2_grpc imports gobgp_pb2 by its bare name
        try:
            modules = tuple(importlib.import_module(name) for name in ("gobgp_pb2", "attribute_pb2", "gobgp_pb2_grpc"))
        except Exception as exc:   # generated code that does not load: say so, never half-work
            raise DriverError(f"the GoBGP API stubs in {target} do not load: {exc}") from None
        _modules = (*modules, Any)
        return _modules


class Api:
    """A gRPC channel to one gobgpd's unix socket."""

    def __init__(self, socket_path: str, timeout_s: float = 10.0):
        self.gobgp, self.attribute, stubs, self._any = load()   # first: it says why when grpc is missing
        import grpc

        self._grpc = grpc
        self.socket_path, self.timeout_s = socket_path, timeout_s
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.stub = stubs.GobgpApiStub(self.channel)

    def _error(self, what: str, exc) -> DriverError:
        """A failed call as a DriverError; Unimplemented (a speaker without that call) as ApiUnimplemented,
        which has the caller fall back to the CLI for good."""
        cls = ApiUnimplemented if exc.code() == self._grpc.StatusCode.UNIMPLEMENTED else DriverError
        return cls(f"gobgpd API on {self.socket_path}: {what}: {exc.code().name}: {exc.details()}")

    def close(self) -> None:
        self.channel.close()

    def _pack(self, message):
        packed = self._any()
        packed.Pack(message)
        return packed

    def path(self, advert, withdraw: bool = False):
        """An EVPN type-3 route as `gobgp global rib -a evpn add multicast …` builds it, or (a prefix) a type-5
        one as `… add prefix …` does (sites/evpn.py)."""
        g, a, pack = self.gobgp, self.attribute, self._pack
        family = g.Family(afi=g.Family.AFI_L2VPN, safi=g.Family.SAFI_EVPN)
        rd = pack(a.RouteDistinguisherIPAddress(admin=advert.vtep, assigned=advert.vni % 65536))
        if advert.prefix:
            network = ipaddress.ip_network(advert.prefix)
            nlri = pack(a.EVPNIPPrefixRoute(rd=rd, esi=a.EthernetSegmentIdentifier(), ethernet_tag=0,
                                            ip_prefix=str(network.network_address), ip_prefix_len=network.prefixlen,
                                            gw_address=advert.vtep, label=advert.vni))
        else:
            nlri = pack(a.EVPNInclusiveMulticastEthernetTagRoute(rd=rd, ethernet_tag=advert.vni,
                                                                  ip_address=advert.vtep))
        communities = [pack(a.EncapExtended(tunnel_type=ENCAP_VXLAN))]
        if advert.as_number <= 65535:   # route target AS:VNI (a 2-octet AS specific community, sub-type 2)
            communities.append(pack(a.TwoOctetAsSpecificExtended(is_transitive=True, sub_type=2,
                                                                 asn=advert.as_number, local_admin=advert.vni)))
        large = [a.LargeCommunity(global_admin=advert.as_number, local_data1=tag, local_data2=value)
                 for tag, value in advert.large_communities()]
        attrs = [pack(a.OriginAttribute(origin=ORIGIN_INCOMPLETE)),
                 pack(a.MpReachNLRIAttribute(family=family, next_hops=["0.0.0.0"], nlris=[nlri])),
                 pack(a.ExtendedCommunitiesAttribute(communities=communities)),
                 pack(a.LargeCommunitiesAttribute(communities=large))]
        if not advert.prefix:
            attrs.insert(3, pack(a.PmsiTunnelAttribute(flags=0, type=PMSI_INGRESS_REPLICATION, label=advert.vni,
                                                       id=ipaddress.ip_address(advert.vtep).packed)))
        return g.Path(nlri=nlri, pattrs=attrs, family=family, is_withdraw=withdraw)

    def announce(self, adverts, withdraw: bool = False) -> None:
        """Every advert added (or withdrawn) in one AddPathStream call."""
        paths = [self.path(advert, withdraw) for advert in adverts]
        if not paths:
            return
        g = self.gobgp
        requests = [g.AddPathStreamRequest(table_type=g.GLOBAL, paths=paths[i:i + BATCH])
                    for i in range(0, len(paths), BATCH)]
        try:
            self.stub.AddPathStream(iter(requests), timeout=self.timeout_s)
        except self._grpc.RpcError as exc:
            verb = "withdraw" if withdraw else "announce"
            raise self._error(f"{verb} {len(paths)} route(s)", exc) from None

    def evpn_routes(self) -> tuple[list, list[tuple[str, str]]]:
        """The global RIB's EVPN paths as evpn.decode_rib gives them from the CLI's JSON: (type-3 Routes,
        (destination, reason) for the other route types), from one ListPath call."""
        from vnstitch.sites.evpn import Route

        g, a = self.gobgp, self.attribute
        request = g.ListPathRequest(table_type=g.GLOBAL, family=g.Family(afi=g.Family.AFI_L2VPN,
                                                                         safi=g.Family.SAFI_EVPN))
        routes, others = [], []
        try:
            for response in self.stub.ListPath(request, timeout=self.timeout_s):
                destination = response.destination
                for path in destination.paths:
                    if not path.best:   # the others decode to the same destination, with a longer AS path
                        continue
                    if path.nlri.Is(a.EVPNIPPrefixRoute.DESCRIPTOR):   # the VNI is its label (evpn.Route)
                        prefix = a.EVPNIPPrefixRoute()
                        path.nlri.Unpack(prefix)
                        local, as_path, _, _, large = self._attributes(path.pattrs)
                        routes.append(Route(destination.prefix, int(prefix.label), prefix.gw_address, local, as_path,
                                            int(prefix.label), prefix.gw_address, large,
                                            f"{prefix.ip_prefix}/{prefix.ip_prefix_len}"))
                        continue
                    if not path.nlri.Is(a.EVPNInclusiveMulticastEthernetTagRoute.DESCRIPTOR):
                        kind = path.nlri.TypeName().rsplit(".", 1)[-1]
                        others.append((destination.prefix, f"EVPN route type {EVPN_ROUTE_TYPES.get(kind, kind)} is "
                                                           "not used (only types 3 and 5)"))
                        continue
                    nlri = a.EVPNInclusiveMulticastEthernetTagRoute()
                    path.nlri.Unpack(nlri)
                    routes.append(Route(destination.prefix, int(nlri.ethernet_tag), nlri.ip_address,
                                        *self._attributes(path.pattrs)))
        except self._grpc.RpcError as exc:
            raise self._error("list the EVPN routes", exc) from None
        return routes, others

    def _attributes(self, pattrs) -> tuple:
        """(local, AS path, PMSI label, PMSI endpoint, large communities) of a path's attributes."""
        a = self.attribute
        as_path: list[int] = []
        label = endpoint = nexthop = None
        large: list[tuple[int, int, int]] = []
        for attr in pattrs:
            if attr.Is(a.AsPathAttribute.DESCRIPTOR):
                message = a.AsPathAttribute()
                attr.Unpack(message)
                for segment in message.segments:
                    as_path.extend(segment.numbers)
            elif attr.Is(a.PmsiTunnelAttribute.DESCRIPTOR):
                message = a.PmsiTunnelAttribute()
                attr.Unpack(message)
                label = message.label
                endpoint = str(ipaddress.ip_address(message.id)) if len(message.id) in (4, 16) else None
            elif attr.Is(a.LargeCommunitiesAttribute.DESCRIPTOR):
                message = a.LargeCommunitiesAttribute()
                attr.Unpack(message)
                large.extend((c.global_admin, c.local_data1, c.local_data2) for c in message.communities)
            elif attr.Is(a.MpReachNLRIAttribute.DESCRIPTOR):
                message = a.MpReachNLRIAttribute()
                attr.Unpack(message)
                nexthop = message.next_hops[0] if message.next_hops else None
        return nexthop == "0.0.0.0", tuple(as_path), label, endpoint, tuple(large)

    def peers(self) -> list[dict]:
        """Every configured neighbor: address, AS, description and session state (`established`, `active`,
        `idle`, …), from one ListPeer call."""
        g = self.gobgp
        try:
            found = []
            for response in self.stub.ListPeer(g.ListPeerRequest(), timeout=self.timeout_s):
                conf, state = response.peer.conf, response.peer.state
                found.append({"address": conf.neighbor_address, "asn": conf.peer_asn,
                              "description": conf.description,
                              "state": g.PeerState.SessionState.Name(state.session_state).lower()})
        except self._grpc.RpcError as exc:
            raise self._error("list the peers", exc) from None
        return sorted(found, key=lambda p: p["address"])
