"""RemoteController: the `Services` interface (controller/services.py) over HTTP, for `vnstitch --server URL ...`.

Error answers are raised again as the same VnstitchError subclasses the server raised.
"""

from __future__ import annotations

from typing import Any

import httpx

from vnstitch.api.errors import RateLimited, ServerUnreachable, error_classes
from vnstitch.controller.services import Change, PassReport, PlannedOp, PlanReport
from vnstitch.domain.registry import kind_class
from vnstitch.domain.resources import Resource
from vnstitch.errors import InvalidInput, VnstitchError

PATHS = {"Node": "substrate/nodes", "Link": "substrate/links", "VirtualNetwork": "virtualnetworks",
         "Stitch": "stitches", "ForecastPolicy": "forecastpolicies"}
PAGE_SIZE = 500


def wire_form(res: Resource) -> dict:
    """What to send: no status (the controller writes it), no tenant unless one was given."""
    body = res.model_dump(by_alias=True, mode="json", exclude_none=True)
    body.pop("status", None)
    if "tenant" not in res.metadata.model_fields_set:
        body["metadata"].pop("tenant", None)
    return body


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        payload = response.json()
        code, message, field = payload["code"], payload["message"], payload.get("field")
    except (ValueError, KeyError, TypeError):
        raise ServerUnreachable(f"server answered {response.status_code}: {response.text[:200]}") from None
    cls = error_classes().get(code)
    if cls is RateLimited:
        raise RateLimited(message, retry_after_s=float(response.headers.get("Retry-After", "1")))
    if cls is None:
        err = VnstitchError(message, field)
        err.code, err.http_status = code, response.status_code  # type: ignore[misc]
        raise err
    raise cls(message, field=field)


SERVER_RECONCILES = "the server reconciles on its own; use `vnstitch plan` to see what it would do"


class RemoteController:
    """Services over a vnstitch API server; tenant None means the token's tenant."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from None
        raise_for_error(response)
        return response

    @staticmethod
    def _params(tenant: str | None, **extra: Any) -> dict:
        params = {k: v for k, v in extra.items() if v is not None}
        if tenant:
            params["tenant"] = tenant
        return params

    def refresh(self) -> None:
        """Nothing to refresh: every call reads the server's current state."""

    def apply(self, resources: list[Resource], dry_run: bool = False, progress=None) -> list[Change]:
        """POST /v1/apply (the server checks the whole request before it answers: no progress here)."""
        body = {"items": [wire_form(r) for r in resources], "dryRun": dry_run}
        answer = self._call("POST", "/v1/apply", json=body).json()
        return [Change(c["kind"], c.get("tenant") or "", c["name"], c["action"]) for c in answer["changes"]]

    def get(self, kind: str, name: str, tenant: str | None = None) -> Resource:
        cls = kind_class(kind)
        path = f"/v1/{PATHS[cls.KIND]}/{name}"
        data = self._call("GET", path, params=self._params(tenant if cls.NAMESPACED else None)).json()
        return cls.model_validate(data)

    def list(self, kind: str, tenant: str | None = None) -> list[Resource]:
        cls = kind_class(kind)
        out: list[Resource] = []
        token = None
        while True:
            params = self._params(tenant if cls.NAMESPACED else None, limit=PAGE_SIZE)
            if token:
                params["continue"] = token
            page = self._call("GET", f"/v1/{PATHS[cls.KIND]}", params=params).json()
            out.extend(cls.model_validate(item) for item in page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return out

    def delete(self, kind: str, name: str, tenant: str | None = None) -> Change:
        cls = kind_class(kind)
        data = self._call("DELETE", f"/v1/{PATHS[cls.KIND]}/{name}",
                          params=self._params(tenant if cls.NAMESPACED else None)).json()
        return Change(data["kind"], data.get("tenant") or "", data["name"], data["action"])

    def availability(self, tenant: str | None, from_end, to_end, bandwidth_bps: float,
                     max_latency_s: float | None = None, symmetric: bool = True, encrypted: bool = True):
        from vnstitch.pathing.paths import Availability, Path

        def end(e) -> dict:
            return e.model_dump(by_alias=True, mode="json", exclude_none=True)

        body = {"from": end(from_end), "to": end(to_end), "bandwidth": bandwidth_bps, "symmetric": symmetric}
        if max_latency_s is not None:
            body["maxLatency"] = max_latency_s
        if not encrypted:
            body["encryption"] = "none"
        data = self._call("POST", "/v1/availability", json=body, params=self._params(tenant)).json()
        path = data.get("path")
        if path is not None:
            nodes = tuple(path["nodes"])
            path = Path(nodes, tuple(path["links"]), tuple(zip(nodes, nodes[1:])), path["latency"], path["cost"],
                        path["bottleneckBandwidth"])
        return Availability(data["feasible"], path, data["bestBandwidth"], data.get("bestLatency"), data["reason"])

    def predicted_graph(self, tenant: str | None = None, at: float | None = None,
                        policy: str | None = None) -> dict | None:
        params = {**self._params(tenant), **({"at": at} if at is not None else {}),
                  **({"policy": policy} if policy else {})}
        spec = self._call("GET", "/v1/predictedgraph", params=params).json()["spec"]
        return spec if spec.get("step") is not None else None

    def approve(self, tenant: str | None, name: str) -> dict:
        return self._call("POST", f"/v1/suggestions/{name}/approve", params=self._params(tenant)).json()["status"]

    def rotate_keys(self, name: str, tenant: str | None = None) -> float:
        """POST /v1/stitches/NAME/rotate-keys: the request's time (unix seconds)."""
        from vnstitch.domain.resources import parse_timestamp

        answer = self._call("POST", f"/v1/stitches/{name}/rotate-keys", params=self._params(tenant)).json()
        return float(parse_timestamp(answer["status"]["requestedAt"]))

    def probe_intent(self, intent) -> dict:
        """POST /v1/probeintents."""
        return self._call("POST", "/v1/probeintents", json=wire_form(intent)).json()

    def answer_proposal(self, tenant: str | None, name: str, accept: bool, note: str = ""):
        """POST /v1/proposals/NAME/accept|reject."""
        from vnstitch.domain.intent import Proposal

        verb = "accept" if accept else "reject"
        return Proposal.model_validate(self._call("POST", f"/v1/proposals/{name}/{verb}", params=self._params(tenant),
                                                  json={"note": note}).json())

    def answer_anomaly(self, tenant: str | None, name: str, what: str, value: bool = True):
        """POST /v1/anomalies/NAME/approve|keep."""
        from vnstitch.domain.anomaly import Anomaly

        body = {"keep": value} if what == "keep" else None
        return Anomaly.model_validate(self._call("POST", f"/v1/anomalies/{name}/{what}", params=self._params(tenant),
                                                 json=body).json())

    def vngraph(self, tenant: str | None = None) -> dict:
        """GET /v1/vngraph."""
        return self._call("GET", "/v1/vngraph", params=self._params(tenant)).json()

    def plan(self) -> PlanReport:
        """The server reconciler's plan (GET /v1/plan, admin)."""
        data = self._call("GET", "/v1/plan").json()
        ops = tuple(PlannedOp(o["action"], o["target"], o["summary"], o["reason"]) for o in data["ops"])
        return PlanReport(ops, leading=data["leading"])

    def reconcile_once(self) -> PassReport:
        raise InvalidInput(SERVER_RECONCILES, field="--server")

    def reconcile_forever(self, stop, interval_s: float, started=None) -> None:
        raise InvalidInput(SERVER_RECONCILES, field="--server")

    def whoami(self) -> dict:
        return self._call("GET", "/v1/whoami").json()
