"""The proactive loop in the running controller: every control interval of every ForecastPolicy, read the
pairs' telemetry, forecast, allocate (planning.allocator), and admit the decisions as forecast stitches
(or record them as suggestions), then store the predicted graph and the policy's status.

Nothing is held in memory between intervals: what the loop holds (its stitches, per pair and part) is
read back from the store, the hysteresis counters from the policy's status, and an interval already run
(status.lastStep) is not run again, so a restart or a new leader continues where the last one stopped.
Training runs in a worker thread (`Trainer`) and never blocks an interval; until a model is trained the
loop forecasts with a baseline fitted on the history it has, and says so in the status.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Protocol

import numpy as np

from vnstitch.controller.service import Controller, terminated
from vnstitch.domain.forecastpolicy import ForecastPolicy
from vnstitch.domain.registry import parse_resource
from vnstitch.domain.stitch import State
from vnstitch.errors import VnstitchError
from vnstitch.forecast.calibration import calibrate_bands, online_update
from vnstitch.forecast.discrepancy import (corrections, next_step_bands, out_of_bounds, rolling, score_interval,
                                          recent_levels, unseen_levels,
                                           summary)
from vnstitch.planning.allocator import AllocatorConfig, AllocatorState, Decision, Held, allocate
from vnstitch.store import Compare, Delete, Put
from vnstitch.telemetry.validate import validate_batch

log = logging.getLogger("vnstitch.proactive")

POLICY_LABEL = "vnstitch.io/forecast-policy"
PAIR_ANNOTATION = "vnstitch.io/pair"
PART_ANNOTATION = "vnstitch.io/part"
REASON_ANNOTATION = "vnstitch.io/reason"
BASELINE_MODEL = "last_value"
PREDICTED_KIND = "PredictedGraph"
SUGGESTION_KIND = "Suggestion"
GRAPH_HISTORY = 288          # predicted graphs kept per policy (a day at 5-minute intervals)
CONTEXT_FOR_KNOWN = 12       # a pair with no sample in this many recent intervals is not forecast
BASELINE_ROWS = 96           # intervals of history the baseline fits its residuals on (8 h at 5 minutes)
RETRY_FAILED_INTERVALS = 12  # a failed fit is tried again after this many intervals
BASELINE_REFIT = 12          # intervals between refits of the baseline (it forecasts from the last value)
RETRAIN_RECORDS = 20         # retrain records kept in a policy's status
VERSIONS_KEPT = 5            # promoted model versions kept (artifacts and records) for rollback
RETRAIN_ANNOTATION = "vnstitch.io/retrain"     # `vnstitch forecast retrain`: a new value asks for a retrain
ROLLBACK_ANNOTATION = "vnstitch.io/rollback"   # `vnstitch forecast rollback`: "VERSION@token" (or "previous@…")

Pair = tuple[str, str]


class TelemetryReader(Protocol):
    def rates(self, tenant: str, pairs: list[Pair], end: float, steps: int, interval_s: float) -> np.ndarray:
        """Mean bit/s per interval (steps, pairs) for the `steps` intervals ending at `end`; NaN = no data."""


class Predictor(Protocol):
    def __call__(self, policy: ForecastPolicy, pairs: list[Pair], history_bps: np.ndarray, observed: np.ndarray,
                 end: float) -> tuple[dict[Pair, float], dict[Pair, float]]:
        """(mean, upper) bit/s per pair for the policy's next horizon."""


class TelemetrySource(Protocol):
    name: str

    def collect(self, now: float) -> list: ...


@dataclass
class PolicyRun:
    """What one control interval of one policy did."""

    policy: str                   # tenant/name
    step: int
    decisions: list[Decision] = field(default_factory=list)
    applied: int = 0
    established: int = 0          # stitch parts created
    adjusted: int = 0             # stitch parts changed
    terminated: int = 0           # stitch parts deleted
    refused: list[str] = field(default_factory=list)
    suggested: int = 0
    model: str = ""
    message: str = ""
    seconds: float = 0.0


def pair_key(pair: Pair) -> str:
    return f"{pair[0]}>{pair[1]}"


def stitch_name(policy: str, pair: Pair, part: int = 0) -> str:
    """fc-<policy>-<src>-<dst>-<hash>[-pN]: readable, and unique per (policy, pair) although names may
    contain '-' (the hash is over the parts joined by a character no name holds); shortened to fit."""
    digest = hashlib.sha256(f"{policy}/{pair[0]}/{pair[1]}".encode()).hexdigest()[:8]
    suffix = f"-{digest}" + (f"-p{part}" if part else "")
    base = f"fc-{policy}-{pair[0]}-{pair[1]}".replace("/", ".")
    return base[:63 - len(suffix)].rstrip("-.") + suffix


class ModelStore:
    """Trained forecasters as versioned artifacts on disk, each checked against its sha256 when loaded."""

    def __init__(self, directory: str):
        self.directory = directory
        self._loaded: dict[str, tuple[str, object]] = {}   # policy key → (checksum, model)
        self.errors: dict[str, str] = {}   # policy key → why its artifact was refused (the last load)
        self._lock = threading.Lock()

    def path_for(self, key: str, version: int) -> str:
        os.makedirs(self.directory, exist_ok=True)
        return os.path.join(self.directory, f"{key.replace('/', '--')}-v{version}.npz")

    @staticmethod
    def checksum(path: str) -> str:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()

    def load(self, key: str, path: str, checksum: str):
        """The model at `path` if its checksum matches (cached by checksum), else None."""
        from vnstitch.forecast import load_forecaster

        with self._lock:
            hit = self._loaded.get(key)
            if hit and hit[0] == checksum:
                return hit[1]
        try:
            with open(path, "rb") as handle:
                if hashlib.sha256(handle.read()).hexdigest() != checksum:
                    raise ValueError("it does not match its checksum")
            model = load_forecaster(path)
        except Exception as exc:  # noqa: BLE001 - corrupt zip, bad JSON, unknown class: refused, never loaded
            reason = f"model artifact {path} refused: {exc}"
            log.error("%s", reason)
            with self._lock:
                self.errors[key] = reason
            return None
        with self._lock:
            self._loaded[key] = (checksum, model)
            self.errors.pop(key, None)
        return model


def _fit_in_child(model_name: str, values, observed, stamps, pairs, interval_s: float, path: str,
                  champion: tuple[str, str] = ("", ""), held_back: int = 0) -> dict:
    """Fit a challenger, judge it against the champion on the held-back window and save it if it wins
    (runs in the trainer's child process)."""
    from vnstitch.forecast.refine import fit_challenger

    return fit_challenger(model_name, values, observed, stamps, pairs, interval_s, path, champion[0], champion[1],
                          held_back)


def _child_init() -> None:
    """The training process yields the CPU to the controller: lowest priority, one compute thread."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        os.nice(19)
    except OSError:
        pass


class Trainer:
    """Trains models one job at a time in a child process (its own interpreter, lowest CPU priority,
    one compute thread), driven by a thread here: the loop never waits for it, and the fit does not
    compete with the loop for this interpreter's lock."""

    def __init__(self, models: ModelStore, on_done: Callable[[str, dict], None]):
        self.models = models
        self.on_done = on_done
        self._pool = None
        self._pending: dict[str, tuple] = {}
        self._busy: set[str] = set()
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="vnstitch-trainer", daemon=True)
        self._thread.start()

    def busy(self, key: str) -> bool:
        with self._wake:
            return key in self._pending or key in self._busy

    def submit(self, key: str, model_name: str, version: int, load: Callable[[], tuple], pairs: list[Pair],
               interval_s: float, at: float, reason: str = "", champion: tuple[str, str] = ("", ""),
               held_back: int = 0) -> None:
        """Queue a fit; `load()` → (values Mbit/s, observed, timestamps) runs in the trainer's thread;
        `at` (the interval's end, the loop's clock) stamps the outcome. With a champion (artifact,
        checksum) the new model replaces it only if it does better on the last `held_back` intervals."""
        with self._wake:
            self._pending[key] = (model_name, version, load, pairs, interval_s, at, reason, champion, held_back)
            self._wake.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop: a fit in progress is abandoned (its child process ends); waits at most `timeout_s`."""
        with self._wake:
            self._stop = True
            self._pending.clear()
            self._wake.notify()
        if self._pool is not None:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._thread.join(timeout_s)

    def _fit(self, key: str, version: int, model_name: str, values, observed, stamps, pairs, interval_s,
             champion=("", ""), held_back: int = 0):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        path = self.models.path_for(key, version)
        for attempt in range(2):
            if self._pool is None:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_child_init)
            try:
                return self._pool.submit(_fit_in_child, model_name, values, observed, stamps, pairs, interval_s,
                                         path, champion, held_back).result()
            except BrokenProcessPool:
                self._pool = None  # the child died (killed, out of memory): once more with a new one
                if attempt or self._stop:
                    raise

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                key, job = self._pending.popitem()
                self._busy.add(key)
            model_name, version, load, pairs, interval_s, at, reason, champion, held_back = job
            started = time.time()
            record = {"version": version, "name": model_name, "reason": reason or "training", "requestedAt": at}
            try:
                values, observed, stamps = load()
                if values.shape[0] >= 1:
                    starts = stamps.astype("datetime64[ms]").astype("int64") / 1e3
                    record["window"] = {"start": float(starts[0]), "end": float(starts[-1] + interval_s),
                                        "intervals": float(values.shape[0]), "heldBack": float(held_back)}
                if not np.isfinite(values).all():
                    raise ValueError("the training window holds values that are not finite")
                verdict = self._fit(key, version, model_name, values, observed, stamps, pairs, interval_s,
                                    champion, held_back)
                seconds = time.time() - started
                record.update({"before": _figures(verdict["before"]), "after": _figures(verdict["after"]),
                               "message": f"{verdict['why']} ({seconds:.1f} s on {values.shape[0]} intervals)"})
                if record.get("window"):
                    record["window"]["heldBack"] = float(verdict["heldBack"])
                if verdict["promoted"]:
                    path = verdict["path"]
                    checksum = self.models.checksum(path)
                    record["decision"] = "promoted"
                    outcome = {"state": "trained", "version": version, "artifact": path, "checksum": checksum,
                               "trainedAt": at, "trainedOn": int(values.shape[0]), "name": model_name,
                               "message": f"trained in {seconds:.1f} s on {values.shape[0]} intervals"}
                else:
                    record["decision"] = "kept"
                    outcome = {"state": "trained", "message": f"retrained v{version} was not better; kept the "
                               f"model in use: {verdict['why']}"}
            except Exception as exc:  # a failed fit is reported in the status, never swallowed
                log.exception("training %s for %s failed", model_name, key)
                outcome = {"state": "failed", "name": model_name, "failedAt": at,
                           "message": f"training {model_name} failed: {exc}"}
                record.update({"decision": "failed", "message": f"{type(exc).__name__}: {exc}"})
            outcome["retrain"] = record
            try:
                self.on_done(key, outcome)
            except Exception:  # the store may be closing under us: the next leader retrains
                log.exception("recording the training outcome of %s failed", key)
            finally:  # busy until the outcome is recorded: else the loop takes "training" for an orphan
                with self._wake:
                    self._busy.discard(key)


class ProactiveLoop:
    """One controller's forecast → allocate → admit loop over every ForecastPolicy in the store."""

    def __init__(self, controller: Controller, telemetry: TelemetryReader, models: ModelStore | None = None,
                 sources: Iterable[TelemetrySource] = (), train: bool = True, predictor: "Predictor | None" = None,
                 quota: Callable[[str, list[dict]], None] | None = None):
        self.controller = controller
        # quota(tenant, stitch values) raises (QuotaExceeded) when writing them would take the tenant over
        # its stitch or bandwidth quota: forecast stitches count against the tenant's quotas like its own
        self.quota = quota
        self.predictor = predictor  # replaces the policy's model (the replay's strategies); None: the model
        self.telemetry = telemetry
        self.sources = list(sources)
        self.models = models
        self.trainer = Trainer(models, self._trained) if (models is not None and train) else None
        self._sources_ok = "ok"
        self._routes: tuple[object, dict] = (None, {})  # (finder, default routes) — see _routes_for
        self._policies_seen: set[tuple[str, str]] | None = None  # for _collect_orphans
        # Fitted baselines by policy: (pairs, step fitted, model). Derived, cheap to lose on a restart.
        self._baselines: dict[str, tuple[tuple, int, object]] = {}
        self._scored: dict[str, dict[int, list[dict]]] = {}  # policy → step → scored rows (see _window)

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.close()

    def seconds_until_due(self, now: float) -> float:
        """Until the next control interval of any policy starts (inf without policies)."""
        due = float("inf")
        self.controller.refresh()
        for record in self.controller.cache.list("ForecastPolicy"):
            policy = ForecastPolicy.model_validate(record.value)
            interval = policy.spec.interval
            current_end = (now // interval) * interval
            done = policy.status.last_end is not None and policy.status.last_end >= current_end
            due = min(due, (current_end + interval - now) if done else 0.0)
        return max(0.0, due)

    # one pass over every policy ----------------------------------------------------------
    def step(self, now: float) -> list[PolicyRun]:
        """Every policy whose control interval is due; one policy's failure is recorded in its status
        (and its interval counted as run) and never stops the others or the reconcile pass."""
        self._collect(now)
        self.controller.refresh()
        runs = []
        policies = self.controller.cache.list("ForecastPolicy")  # current: refreshed above
        for record in policies:
            try:
                run = self.run_policy(record, now)
            except Exception as exc:  # noqa: BLE001 - recorded where the operator looks, and logged
                log.exception("forecast policy %s/%s failed", record.namespace, record.name)
                run = self._failed(record, now, exc)
            if run is not None:
                runs.append(run)
        names = {(r.namespace, r.name) for r in policies}
        if runs or names != self._policies_seen:  # only when something ran or a policy came or went
            self._collect_orphans(names)
            self._policies_seen = names
        return runs

    def _failed(self, record, now: float, exc: Exception) -> PolicyRun | None:
        try:
            policy = ForecastPolicy.model_validate(record.value)
            step = int(now // policy.spec.interval)
            run = PolicyRun(f"{record.namespace}/{record.name}", step,
                            message=f"interval failed: {type(exc).__name__}: {exc}")
            self._write_status(record, policy, step, now, dict(policy.status.safe_intervals), run, pairs=0)
            return run
        except Exception:  # noqa: BLE001 - not even the status could be written: logged above
            log.exception("recording the failure of %s/%s failed", record.namespace, record.name)
            return None

    def _collect_orphans(self, policies: set[tuple[str, str]]) -> None:
        """Forecast stitches whose policy is gone are ended."""
        for record in self.controller.cache.list("Stitch"):
            owner = record.value["metadata"].get("labels", {}).get(POLICY_LABEL)
            if owner is None or (record.namespace, owner) in policies or terminated(record.value) \
                    or record.value["metadata"].get("deletionTimestamp"):
                continue
            try:
                self.controller.delete("stitches", record.name, record.namespace, fenced=True)
            except VnstitchError as exc:
                log.warning("ending orphaned forecast stitch %s/%s: %s", record.namespace, record.name, exc)

    def _collect(self, now: float) -> None:
        """Pull sources write into the telemetry store; a failing one degrades, never stops, the loop."""
        problems = []
        for source in self.sources:
            try:
                samples = source.collect(now)
                if samples:  # the same checks as pushed samples (a NaN or negative rate names the sample)
                    self.telemetry.insert(validate_batch(samples, now, prefix=source.name))
            except Exception as exc:  # reported in every policy's status
                log.warning("telemetry source %s: %s", source.name, exc)
                problems.append(f"{source.name}: {exc}")
        self._sources_ok = "; ".join(problems) or "ok"

    def run_policy(self, record, now: float) -> PolicyRun | None:
        policy = ForecastPolicy.model_validate(record.value)
        spec, tenant, key = policy.spec, record.namespace, f"{record.namespace}/{record.name}"
        step = int(now // spec.interval)
        end = step * spec.interval
        if policy.status.last_end is not None and policy.status.last_end >= end:
            return None  # this interval already ran (here, or on the leader before us)
        started = time.perf_counter()
        run = PolicyRun(key, step)
        retrain_request, handled = "", {}
        if self.predictor is None:
            policy, retrain_request, handled = self._requests(record, policy, key, end)
        if spec.mode == "off":
            self._end_held(tenant, record.name, self._held(tenant, record.name, {}), "the policy is off", run)
            run.message = "mode off: no forecast, no decisions; its stitches ended"
            self._write_status(record, policy, step, now, {}, run, pairs=0)
            return run
        ends = self._ends(policy)
        pairs = self._pairs(policy, ends)
        # An interval reads only what forecasting needs (a day for the baseline's residuals, or enough to
        # tell whether training may start); the trainer reads the whole training window in its own thread.
        window = max(2, int(spec.training_window // spec.interval))

        def read(rows: int):
            """History of the pairs with data in the recent context (a gap is missing data, never zero:
            a pair without any sample there gets no forecast and no decision until telemetry arrives)."""
            data = self.telemetry.rates(tenant, pairs, end, min(window, rows), spec.interval) if pairs \
                else np.zeros((0, 0))
            seen = np.isfinite(data)
            recent = seen[-CONTEXT_FOR_KNOWN:]
            columns = [j for j in range(len(pairs)) if recent[:, j].any()]
            return data[:, columns], seen[:, columns], [pairs[j] for j in columns], int(seen.any(axis=1).sum())

        # An interval reads only what forecasting needs; a day when the baseline is (re)fitted or training
        # may start. The trainer reads the whole training window in its own thread.
        trained = None if self.predictor is not None else self._forecaster(policy, key, None)[0]
        history, observed, known, have = read(max(CONTEXT_FOR_KNOWN, trained.context_steps if trained else 1))
        if self.predictor is not None:
            forecaster, model_label = self.predictor, "external"
        else:
            forecaster, model_label = self._forecaster(policy, key, known)
            cached = self._baselines.get(key)
            fresh = cached is not None and cached[0] == tuple(known) and step - cached[1] < BASELINE_REFIT
            trainable = self.trainer is not None and not self.trainer.busy(key)
            if forecaster is None and (not fresh or trainable):
                history, observed, known, have = read(max(BASELINE_ROWS, spec.min_history))
                self._maybe_train(policy, key, history, observed, end, known, have)
            if forecaster is None and known:
                forecaster = self._baseline(key, step, history, observed, end, spec.interval, known, have)
                model_label = "baseline" if forecaster is not None else ""
        model_status = policy.status.model
        run.model = model_label
        safe = dict(policy.status.safe_intervals)
        if forecaster is None:
            run.message = f"waiting for telemetry: {have} of 2 intervals with data"
            self._write_status(record, policy, step, now, safe, run, pairs=len(pairs))
            return run
        try:
            if self.predictor is not None:  # (mean, upper) or (mean, upper, next-interval bands)
                predicted = self.predictor(policy, known, history, observed, end)
                mean_bps, upper_bps = dict(predicted[0]), dict(predicted[1])
                bands = dict(predicted[2]) if len(predicted) > 2 else {}
            else:
                mean_bps, upper_bps, bands = _forecast(forecaster, history, observed, end, spec, known)
        except VnstitchError as exc:
            run.message = f"forecast failed: {exc}"
            self._write_status(record, policy, step, now, safe, run, pairs=len(pairs))
            return run
        scope = set(known)
        held_all = self._held(tenant, record.name, safe)
        gone = {p: h for p, h in held_all.items() if p not in scope}
        if gone:  # out of the policy's scope, or no telemetry for CONTEXT_FOR_KNOWN intervals
            self._end_held(tenant, record.name, gone, f"pair out of scope or without telemetry for "
                           f"{CONTEXT_FOR_KNOWN} intervals", run)
        pairs = known
        finder = self.controller.pathfinder()
        nodes = {pair: (ends[pair[0]], ends[pair[1]]) for pair in pairs}
        routes = self._routes_for(finder, [nodes[pair] for pair in pairs])
        routes = {pair: routes[nodes[pair]] for pair in pairs}
        default_paths = {pair: route[0] if route else None for pair, route in routes.items()}
        held = {p: h for p, h in held_all.items() if p in scope}
        refine = spec.refinement
        actual = {p: float(history[-1, j]) for j, p in enumerate(known) if history.shape[0] and observed[-1, j]}
        previous = self._graph(tenant, record.name, step - 1)
        scored = score_interval(list(previous.get("forecast") or []), actual)
        recent = self._window(key, tenant, record.name, step, max(refine.window, refine.correction_window), scored)
        overall, per_pair = rolling(recent[-refine.window:])
        for entry in bands.values():   # the model's own 90% band: what judges the model (retrain bounds)
            if "lo90Bps" in entry and "hi90Bps" in entry:
                entry.setdefault("rawLo90Bps", entry["lo90Bps"])
                entry.setdefault("rawHi90Bps", entry["hi90Bps"])
        corrected, stand_in = {}, []
        if refine.correct:  # the level the model misses lately (from its own, uncorrected point forecasts)
            lately, samples = recent[-refine.correction_window:], min(refine.min_samples, refine.correction_window // 2)
            corrected = corrections(lately, samples)
            for pair, factor in corrected.items():
                if pair in mean_bps:
                    mean_bps[pair] *= factor
                    upper_bps[pair] *= factor
                    if pair in bands:
                        bands[pair] = {**{k: (v if k.startswith("raw") else v * factor) for k, v in bands[pair].items()},
                                       "rawPointBps": bands[pair].get("rawPointBps", bands[pair]["pointBps"])}
            # a pair the model forecasts nothing for while it carries traffic (new since the fit): its recent
            # level and range stand in until the model knows it (no factor scales a forecast of zero)
            levels = recent_levels(lately, samples)
            unseen = unseen_levels(lately, levels)
            for pair, (level, low, high) in unseen.items():
                if pair not in mean_bps:
                    continue
                stand_in.append(pair)
                raw_point = bands.get(pair, {}).get("rawPointBps", bands.get(pair, {}).get("pointBps", mean_bps[pair]))
                mean_bps[pair] = max(mean_bps[pair], level)
                upper_bps[pair] = max(upper_bps[pair], high)
                bands[pair] = {**{k: v for k, v in bands.get(pair, {}).items() if k.startswith("raw")},
                               "pointBps": level, "lo80Bps": low, "hi80Bps": high, "lo90Bps": low * 0.9,
                               "hi90Bps": high * 1.1, "rawPointBps": raw_point}
            # a band of no width on a pair that carries traffic (the model saw it idle): the recent actuals'
            # relative spread around the model's point, which the calibration can then widen or narrow
            for pair, (level, low, high) in levels.items():
                band = bands.get(pair) or {}
                if pair in unseen or "lo90Bps" not in band or band["hi90Bps"] > band["lo90Bps"] or level <= 0:
                    continue   # only the model's own band of no width
                point = band.get("pointBps", mean_bps.get(pair, 0.0))
                stand_in.append(pair)
                bands[pair] = {**bands[pair], "lo80Bps": point * low / level, "hi80Bps": point * high / level,
                               "lo90Bps": point * low / level * 0.9, "hi90Bps": point * high / level * 1.1}
        calibration = {}
        if refine.calibrate:  # online: the published bands' misses move their offsets
            state = (previous.get("discrepancy") or {}).get("calibration")
            if state is None:   # no graph for the last interval (a skipped one, a failover): the latest there is
                state = (self._graph(tenant, record.name, "current").get("discrepancy") or {}).get("calibration")
            calibration = online_update(state, scored,
                                        refine.calibration_gain, refine.pair_calibration_gain,
                                        pairs={pair_key(p) for p in known})
            bands, _ = calibrate_bands({p: b for p, b in bands.items() if p in mean_bps}, calibration)
        adjusted = self._adjust(refine, held, actual, per_pair, mean_bps, upper_bps) if refine.adjust else {}
        bound = out_of_bounds(overall, refine.min_samples, refine.min_coverage, refine.max_nmae)
        breach = policy.status.discrepancy.breach_intervals + 1 if bound else 0
        retrain_reason = retrain_request
        if not retrain_reason and refine.retrain and breach >= refine.retrain_after and self.predictor is None:
            retrain_reason = f"discrepancy: {bound} for {breach} intervals"
        if retrain_reason:
            breach = 0  # judged again over the next retrainAfter intervals
            if trained is None:
                self._baselines.pop(key, None)  # the baseline is refitted on the recent history right away
            else:
                self._maybe_train(policy, key, history, observed, end, known, have, reason=retrain_reason)
        elif trained is not None:  # the schedule, a model change, a failure to retry (it had the history)
            self._maybe_train(policy, key, history, observed, end, known, max(have, spec.min_history))
        discrepancy = {**summary(overall, per_pair, refine.window, refine.min_samples), "breachIntervals": breach,
                       "adjusted": sorted(pair_key(p) for p in adjusted),
                       "corrected": {pair_key(p): round(f, 3) for p, f in sorted(corrected.items()) if p in mean_bps},
                       "unseen": sorted(pair_key(p) for p in stand_in),
                       **({"calibration": {"global": calibration["global"]}} if calibration else {})}
        config = AllocatorConfig(quantile=spec.quantile, congestion_threshold=spec.congestion_threshold,
                                 terminate_after=spec.terminate_after,
                                 demand_label=getattr(self.predictor, "demand_label", ""))  # reasons' wording
        capacity = {arc: finder.capacity_bps(arc) for arc in finder.arcs()}
        reachable = {p for p in pairs if default_paths[p] is not None}
        bounds = None
        if spec.latency_factor is not None:
            bounds = {p: spec.latency_factor * routes[p][1] + spec.latency_slack for p in reachable}
        allocation = allocate(AllocatorState({p: h for p, h in held.items() if p in reachable}),
                              {p: mean_bps[p] for p in reachable}, {p: upper_bps[p] for p in reachable},
                              {p: default_paths[p] for p in reachable}, capacity, finder, config,
                              latency_bound_s=bounds, nodes=nodes)
        if adjusted:  # the discrepancy is the reason for what it changed
            allocation.decisions = [replace(d, reason=f"{adjusted[d.pair]}; {d.reason}") if d.pair in adjusted else d
                                    for d in allocation.decisions]
        run.decisions = allocation.decisions
        if spec.mode == "auto":
            landed = self._apply(tenant, record.name, spec, allocation.decisions, held, run)
        else:
            run.suggested = self._suggest(tenant, record.name, step, now, allocation.decisions)
            landed = held
        safe = {pair_key(p): allocation.state.held[p].safe_intervals for p in landed if p in allocation.state.held}
        self._record_graph(tenant, record.name, step, end, allocation, mean_bps, upper_bps, spec.interval, bands,
                           {"pairs": scored, "rolling": {"window": refine.window, **overall, "pairs": [
                               {"from": p[0], "to": p[1], **f} for p, f in per_pair.items()]},
                            **({"calibration": calibration} if calibration else {})})
        run.seconds = time.perf_counter() - started
        run.message = (f"{len(allocation.decisions)} decisions ({run.applied} applied, {len(run.refused)} refused)"
                       if spec.mode == "auto" else f"{run.suggested} decisions suggested, awaiting approval")
        if run.refused:
            run.message += f"; first refusal: {run.refused[0]}"
        if model_label == "baseline" and model_status.state != "training":
            run.message += f"; forecasting with the baseline ({BASELINE_MODEL}) until {spec.model} is trained"
        if adjusted:
            run.message += f"; resized from the observed rate: {', '.join(discrepancy['adjusted'])}"
        if self.models is not None and self.models.errors.get(key):
            run.message += f"; {self.models.errors[key]}"
        self._write_status(record, policy, step, now, safe, run, pairs=len(pairs), stitches=len(landed),
                           extra={"discrepancy": discrepancy,
                                  **({"handled": handled} if handled else {})})
        return run

    # refinement: the forecast against what happened -------------------------------------------
    def _graph(self, tenant: str, policy: str, step: "int | str") -> dict:
        """Interval `step`'s predicted graph ({} when there is none): its forecast entries are what the next
        interval is scored on, its discrepancy carries the online calibration's state."""
        graph = self.controller.store.get(PREDICTED_KIND, tenant, f"{policy}.{step}")
        return graph.value if graph is not None else {}

    def _window(self, key: str, tenant: str, policy: str, step: int, window: int, scored: list[dict]):
        """The scored rows of the last `window` intervals (this one's given): each interval's rows are kept
        in its predicted graph, cached here (derived, cheap to lose: a new leader reads them back)."""
        cache = self._scored.setdefault(key, {})
        cache[step] = scored
        for old in [s for s in cache if s <= step - window or s > step]:
            del cache[old]
        out = []
        for s in range(step - window + 1, step + 1):
            if s not in cache:
                graph = self.controller.store.get(PREDICTED_KIND, tenant, f"{policy}.{s}")
                cache[s] = list((graph.value.get("discrepancy") or {}).get("pairs") or []) if graph else []
            out.append(cache[s])
        return out

    @staticmethod
    def _adjust(refine, held: dict[Pair, Held], actual: dict[Pair, float], per_pair: dict, mean_bps: dict,
                upper_bps: dict) -> dict[Pair, str]:
        """Pairs whose forecast missed (a stitched pair's actual rate passed its reservation, or a pair's
        rolling 90% coverage fell under the threshold): their upper forecast becomes at least the observed
        rate × (1 + margin), so the allocator resizes (or reroutes, or establishes) now. Pair → reason."""
        out = {}
        for pair, rate in actual.items():
            if pair not in upper_bps:
                continue
            h, figures = held.get(pair), per_pair.get(pair) or {}
            coverage = figures.get("coverage90")
            if h is not None and rate > h.total_bps:
                why = f"actual {rate / 1e6:.0f} Mbit/s passed the reservation {h.total_bps / 1e6:.0f} Mbit/s"
            elif coverage is not None and figures.get("samples", 0) >= refine.min_samples \
                    and coverage < refine.coverage_threshold:
                why = f"rolling 90% coverage {coverage:.2f} < {refine.coverage_threshold:g}"
            else:
                continue
            floor = rate * (1 + refine.margin)
            if floor <= upper_bps[pair]:
                continue  # the forecast already covers it
            upper_bps[pair] = floor
            mean_bps[pair] = max(mean_bps[pair], rate)
            out[pair] = f"discrepancy: {why}; sized to the observed rate + {refine.margin:.0%}"
        return out

    def _requests(self, record, policy: ForecastPolicy, key: str, end: float):
        """Act on `forecast retrain` / `forecast rollback` (annotations with a new value): a rollback lands
        now (an artifact that fails its checksum or does not load is refused, with the reason, in the
        retrain records); a retrain is returned as a reason. (policy re-read, retrain reason, handled)."""
        annotations = policy.metadata.annotations or {}
        handled = dict(policy.status.handled)
        retrain = annotations.get(RETRAIN_ANNOTATION)
        reason = ""
        if retrain and handled.get(RETRAIN_ANNOTATION) != retrain:
            handled[RETRAIN_ANNOTATION] = retrain
            reason = "requested (vnstitch forecast retrain)"
        rollback = annotations.get(ROLLBACK_ANNOTATION)
        if rollback and handled.get(ROLLBACK_ANNOTATION) != rollback:
            handled[ROLLBACK_ANNOTATION] = rollback
            self._rollback(policy, key, rollback.partition("@")[0], end, handled)
            current = self.controller.store.get("ForecastPolicy", record.namespace, record.name)
            policy = ForecastPolicy.model_validate(current.value)
        return policy, reason, ({k: v for k, v in handled.items() if policy.status.handled.get(k) != v})

    def _rollback(self, policy: ForecastPolicy, key: str, target: str, end: float, handled: dict) -> None:
        status, model = policy.status, policy.status.model
        versions = {v.version: v for v in status.versions}
        chosen = None
        if target in ("", "previous"):
            older = [v for v in sorted(versions) if v < model.version]
            chosen = versions[older[-1]] if older else None
            problem = "" if chosen else f"no version before v{model.version} is kept"
        elif target.isdigit() and int(target) in versions:
            chosen, problem = versions[int(target)], ""
        else:
            problem = f"version {target!r} is not kept (kept: {', '.join(f'v{v}' for v in sorted(versions)) or 'none'})"
        if chosen is not None and self.models is not None:
            self.models.errors.pop(key, None)
            if self.models.load(f"{key}#rollback", chosen.artifact, chosen.checksum) is None:
                problem = self.models.errors.pop(f"{key}#rollback", "its artifact cannot be loaded")
        record = {"version": chosen.version if chosen else model.version, "name": chosen.name if chosen else model.name,
                  "reason": f"rollback to {target or 'previous'} (vnstitch forecast rollback)", "requestedAt": end,
                  "decision": "failed" if problem else "rolled back",
                  "message": f"rollback refused: {problem}; still forecasting with v{model.version}" if problem
                  else f"now forecasting with v{chosen.version} (was v{model.version})"}

        def change(current: dict) -> dict:
            current["retrains"] = [*(current.get("retrains") or []), record][-RETRAIN_RECORDS:]
            current["handled"] = {**(current.get("handled") or {}), **handled}
            if not problem:
                current["model"] = {**(current.get("model") or {}), "state": "trained", "name": chosen.name,
                                    "version": chosen.version, "artifact": chosen.artifact,
                                    "checksum": chosen.checksum, "trainedAt": chosen.trained_at,
                                    "trainedOn": chosen.trained_on, "message": record["message"]}
            return current

        self._update_status(key, change)

    def _routes_for(self, finder, node_pairs: list[tuple[str, str]]) -> dict:
        """Default routes ((nodes, latency) or None) between node pairs, one Dijkstra per new source,
        memoised for as long as the substrate (the finder) is the same."""
        if self._routes[0] is not finder:
            self._routes = (finder, {})
        cache = self._routes[1]
        missing: dict[str, set[str]] = {}
        for a, b in node_pairs:
            if (a, b) not in cache:
                missing.setdefault(a, set()).add(b)
        for a, targets in missing.items():
            for b, path in finder.lowest_latency_from(a, sorted(targets)).items():
                cache[(a, b)] = (path.nodes, path.latency_s) if path is not None else None
        return cache

    # scope -----------------------------------------------------------------------------------
    def _ends(self, policy: ForecastPolicy) -> dict[str, str]:
        """Endpoint ('net' or 'net/vm') → the substrate node its traffic enters at."""
        tenant, spec = policy.metadata.tenant, policy.spec
        out = {}
        for record in self.controller.cache.list("VirtualNetwork", tenant):
            labels = record.value["metadata"].get("labels", {})
            if spec.networks is not None and record.name not in spec.networks:
                continue
            if spec.selector is not None and any(labels.get(k) != v for k, v in spec.selector.items()):
                continue
            members = record.value["spec"].get("members", [])
            if not members:
                continue
            counts: dict[str, int] = {}
            for member in members:
                counts[member["node"]] = counts.get(member["node"], 0) + 1
                out[f"{record.name}/{member['name']}"] = member["node"]
            out[record.name] = min(counts, key=lambda node: (-counts[node], node))
        return out

    @staticmethod
    def _pairs(policy: ForecastPolicy, ends: dict[str, str]) -> list[Pair]:
        if policy.spec.pairs is not None:
            return [(p.from_, p.to) for p in policy.spec.pairs if p.from_ in ends and p.to in ends and p.from_ != p.to]
        networks = sorted(e for e in ends if "/" not in e)
        return [(a, b) for a in networks for b in networks if a != b]

    # held state, from the store --------------------------------------------------------------
    def held(self, tenant: str, policy: str) -> dict[Pair, Held]:
        """What the policy's stitches hold now, per pair (read from the store)."""
        return self._held(tenant, policy, {})

    def _held(self, tenant: str, policy: str, safe: dict[str, int]) -> dict[Pair, Held]:
        parts: dict[Pair, dict[int, tuple[tuple[str, ...], float]]] = {}
        for record in self.controller.cache.list("Stitch", tenant):
            meta, value = record.value["metadata"], record.value
            if meta.get("labels", {}).get(POLICY_LABEL) != policy or meta.get("deletionTimestamp") \
                    or terminated(value):
                continue
            status = value.get("status") or {}
            if status.get("state") == State.FAILED.value and not status.get("path"):
                continue  # withdrawn: the loop may place it again
            src, _, dst = meta.get("annotations", {}).get(PAIR_ANNOTATION, "").partition(">")
            path = tuple(value["spec"].get("path") or status.get("path") or ())
            if not src or not dst or len(path) < 1:
                continue
            part = int(meta.get("annotations", {}).get(PART_ANNOTATION, "0"))
            parts.setdefault((src, dst), {})[part] = (path, float(value["spec"].get("bandwidth", 0.0)))
        held = {}
        for pair, by_index in parts.items():
            prefix = []
            for i in range(len(by_index)):
                if i not in by_index:
                    break
                prefix.append(by_index[i])
            if prefix:
                held[pair] = Held(prefix[0][0], prefix[0][1], safe.get(pair_key(pair), 0), tuple(prefix[1:]))
        return held

    # decisions -> stitches ----------------------------------------------------------------------
    def _admit(self, tenant: str, docs: list) -> list:
        """apply_each over the docs the tenant's quotas allow: in order, each is admitted only if, with
        those admitted before it, it keeps the tenant within its quotas (else its outcome is the
        QuotaExceeded error, and the part is refused as admission refuses one); one outcome per doc."""
        if not docs:
            return []
        outcomes: list = [None] * len(docs)
        allowed: list[int] = []
        if self.quota is None:
            allowed = list(range(len(docs)))
        else:
            accepted: list[dict] = []
            for k, doc in enumerate(docs):
                value = {"metadata": {"name": doc.name}, "spec": {"bandwidth": float(doc.spec.bandwidth)}}
                try:
                    self.quota(tenant, accepted + [value])
                except VnstitchError as exc:
                    outcomes[k] = exc
                    continue
                accepted.append(value)
                allowed.append(k)
        if allowed:
            for k, outcome in zip(allowed, self.controller.apply_each([docs[k] for k in allowed], fenced=True)):
                outcomes[k] = outcome
        return outcomes

    def _apply(self, tenant: str, policy: str, spec, decisions: list[Decision], held: dict[Pair, Held],
               run: PolicyRun) -> dict[Pair, Held]:
        """Admit the decisions as stitches (one per part); a refused part keeps what it had. Returns
        what the loop holds afterwards."""
        docs, owners, stale = [], [], []
        for decision in decisions:
            before = held[decision.pair].parts if decision.pair in held else ()
            parts = () if decision.action == "terminate" else decision.all_parts
            stale += [stitch_name(policy, decision.pair, i) for i in range(len(parts), len(before))]
            for i, (path, bps) in enumerate(parts):
                docs.append(_stitch_doc(tenant, policy, spec, decision, i, path, bps))
                owners.append((decision, i))
        landed: dict[Pair, dict[int, tuple]] = {}
        for (decision, i), outcome in zip(owners, self._admit(tenant, docs)):
            before = held[decision.pair].parts if decision.pair in held else ()
            if isinstance(outcome, VnstitchError):
                run.refused.append(f"{stitch_name(policy, decision.pair, i)}: {outcome}")
                if i < len(before):
                    landed.setdefault(decision.pair, {})[i] = before[i]
            else:
                if outcome.action != "unchanged":
                    run.applied += 1
                    if i < len(before):
                        run.adjusted += 1
                    else:
                        run.established += 1
                landed.setdefault(decision.pair, {})[i] = decision.all_parts[i]
        after = {p: h for p, h in held.items()}
        for decision in decisions:
            if decision.action == "terminate":
                after.pop(decision.pair, None)
                continue
            parts = [landed.get(decision.pair, {}).get(i) for i in range(len(decision.all_parts))]
            first_gap = next((i for i, part in enumerate(parts) if part is None), len(parts))
            kept = parts[:first_gap]
            stale += [stitch_name(policy, decision.pair, i) for i in range(first_gap, len(parts))]
            if kept:
                after[decision.pair] = Held(kept[0][0], kept[0][1], 0, tuple(kept[1:]))
            else:
                after.pop(decision.pair, None)
        for name in stale:
            try:
                self.controller.delete("stitches", name, tenant, fenced=True)
                run.terminated += 1
            except VnstitchError:
                pass  # never created (refused), or already going
        return after

    def _end_held(self, tenant: str, policy: str, held: dict[Pair, Held], reason: str, run: PolicyRun) -> None:
        """End every part of these pairs' stitches (the loop no longer decides for them)."""
        for pair, h in sorted(held.items()):
            for part in range(len(h.parts)):
                try:
                    self.controller.delete("stitches", stitch_name(policy, pair, part), tenant, fenced=True)
                    run.terminated += 1
                except VnstitchError:
                    pass  # already going
            log.info("forecast policy %s/%s: ended the stitches of %s (%s)", tenant, policy, pair_key(pair), reason)

    def _suggest(self, tenant: str, policy: str, step: int, now: float, decisions: list[Decision]) -> int:
        """Record decisions for an operator to approve (`vnstitch approve`). A pending suggestion expires
        when the next interval runs (its forecast is stale by then): it is removed."""
        store = self.controller.store
        ops: list = [Delete(SUGGESTION_KIND, tenant, r.name) for r in store.list(SUGGESTION_KIND, tenant)
                     if r.value.get("policy") == policy and r.value.get("step", step) < step
                     and r.value.get("state") == "pending"]
        for index, decision in enumerate(decisions):
            ops.append(Put(SUGGESTION_KIND, tenant, f"{policy}-{step}-{index}", {
                "policy": policy, "step": step, "time": now, "action": decision.action,
                "from": decision.pair[0], "to": decision.pair[1], "bandwidthBps": decision.bandwidth_bps,
                "parts": [{"path": list(p), "bandwidthBps": b} for p, b in decision.all_parts]
                if decision.action != "terminate" else [],
                "reason": decision.reason, "forecastMeanBps": decision.forecast_mean_bps,
                "forecastUpperBps": decision.forecast_upper_bps, "state": "pending"}))
        if ops:
            store.txn([*self.controller.fence], ops)
        return len(decisions)

    def approve(self, tenant: str, name: str) -> PolicyRun:
        """Apply one suggested decision now (suggest mode)."""
        return approve_suggestion(self.controller, tenant, name)

    # forecasting and training ------------------------------------------------------------------
    def _baseline(self, key: str, step: int, history, observed, end: float, interval_s: float, pairs, have: int):
        """The baseline forecaster, refitted every BASELINE_REFIT intervals (or when the pairs change) on the
        day of history it was given; None with fewer than two intervals of data."""
        cached = self._baselines.get(key)
        if cached is not None and cached[0] == tuple(pairs) and step - cached[1] < BASELINE_REFIT:
            return cached[2]
        if have < 2 or history.shape[0] < 2:
            return cached[2] if cached is not None and cached[0] == tuple(pairs) else None
        model = _baseline(history, observed, end, interval_s, pairs)
        self._baselines[key] = (tuple(pairs), step, model)
        return model

    def _forecaster(self, policy: ForecastPolicy, key: str, pairs: list[Pair] | None):
        """The policy's trained model, loaded from its artifact; None when there is none (or it was
        trained for other pairs than `pairs`, unless pairs is None)."""
        model = policy.status.model
        if self.models is None or not model.artifact or not model.checksum:
            return None, ""  # nothing trained yet (a model being retrained is used until the new one lands)
        loaded = self.models.load(key, model.artifact, model.checksum)
        if loaded is None or (pairs is not None and tuple(tuple(p) for p in loaded.pairs) != tuple(pairs)):
            return None, ""  # missing, corrupt, or trained for another set of pairs: retrain
        return loaded, f"{model.name} v{model.version}"

    def _maybe_train(self, policy: ForecastPolicy, key: str, history, observed, end: float, pairs, have: int,
                     reason: str = ""):
        """Start a training when one is due: none yet, stale pairs, the schedule, a model change, an
        orphaned or failed one, or `reason` (a persistent discrepancy, a request)."""
        if self.trainer is None or not pairs or self.trainer.busy(key):
            return
        model = policy.status.model
        if not reason and have < policy.spec.min_history:
            return
        stale_pairs = model.state == "trained" and self._forecaster(policy, key, pairs)[0] is None
        due = policy.spec.retrain_every is not None and model.trained_at is not None \
            and end - model.trained_at >= policy.spec.retrain_every
        # "training" that this process is not doing was left by a restart or another leader: do it again;
        # a failed fit is retried after RETRY_FAILED_INTERVALS intervals
        orphaned = model.state == "training" and self._still_training(key)
        retry = model.state == "failed" and (model.failed_at is None
                                             or end - model.failed_at >= RETRY_FAILED_INTERVALS * policy.spec.interval)
        status = policy.status
        if not reason:
            reason = ("first training" if model.state in ("waiting", "baseline") else
                      "trained for other pairs" if stale_pairs else "schedule (retrainEvery)" if due else
                      "training left unfinished" if orphaned else "retry after a failure" if retry else
                      f"model changed to {policy.spec.model}"
                      if model.name != policy.spec.model and model.state == "trained"
                      and not any(r.name == policy.spec.model and r.decision in ("kept", "failed")
                                  and end - (r.requested_at or 0) < RETRY_FAILED_INTERVALS * policy.spec.interval
                                  for r in status.retrains[-3:])
                      else "")
        if not reason:
            return
        spec, tenant = policy.spec, policy.metadata.tenant
        window = max(2, int(spec.training_window // spec.interval))

        def load():
            """The training window, read in the trainer's thread (it may be weeks of data)."""
            data = self.telemetry.rates(tenant, pairs, end, window, spec.interval)
            seen = np.isfinite(data)
            rows = seen.any(axis=1)
            first = int(np.argmax(rows)) if rows.any() else 0
            return (np.nan_to_num(data[first:], nan=0.0) / 1e6, seen[first:],
                    _stamps(end, data.shape[0], spec.interval)[first:])

        version = max([model.version, *(r.version for r in status.retrains)]) + 1
        champion = (model.artifact, model.checksum) if model.artifact and not stale_pairs else ("", "")
        # "training" lands before the job is queued: a fit that finishes at once must not be overwritten by it
        self._update_model(key, {"state": "training", "name": model.name if model.artifact else spec.model,
                                 "requestedAt": end, "message": f"training {spec.model} ({reason})"})
        self.trainer.submit(key, spec.model, version, load, pairs, spec.interval, end, reason=reason,
                            champion=champion, held_back=spec.refinement.held_back)

    def _trained(self, key: str, outcome: dict) -> None:
        """Record a training's outcome: the model in use (a failed or beaten challenger leaves it), the
        retrain record (bounded list) and, when promoted, the version kept for rollback."""
        outcome = dict(outcome)
        retrain = outcome.pop("retrain", None)

        def change(status: dict) -> dict:
            model = dict(status.get("model") or {})
            fields = outcome
            if outcome["state"] == "failed" and model.get("artifact"):  # the model in use stays in use
                fields = {**outcome, "state": "trained", "name": model.get("name", outcome["name"]),
                          "message": f"{outcome['message']}; still forecasting with v{model.get('version')}"}
            status["model"] = {**model, **fields}
            if retrain is not None:
                status["retrains"] = [*(status.get("retrains") or []), retrain][-RETRAIN_RECORDS:]
            if outcome.get("artifact"):
                kept = {k: outcome[k] for k in ("version", "name", "artifact", "checksum", "trainedAt", "trainedOn")}
                status["versions"] = [*(v for v in status.get("versions") or [] if v["version"] != kept["version"]),
                                      kept][-VERSIONS_KEPT:]
            return status

        self._update_status(key, change)

    def _still_training(self, key: str) -> bool:
        """The stored status still says "training" (the pass's copy may predate an outcome that the
        trainer recorded, and stopped being busy, since it was read)."""
        tenant, name = key.split("/", 1)
        record = self.controller.store.get("ForecastPolicy", tenant, name)
        return record is not None and ((record.value.get("status") or {}).get("model") or {}).get("state") == "training"

    def _update_model(self, key: str, fields: dict) -> None:
        """Merge `fields` into the policy's status.model (compare-and-swap, retried)."""
        self._update_status(key, lambda status: {**status, "model": {**(status.get("model") or {}), **fields}})

    def _update_status(self, key: str, change: Callable[[dict], dict]) -> None:
        """Apply `change` to the policy's status (compare-and-swap, re-read and retried)."""
        tenant, name = key.split("/", 1)
        for _ in range(20):
            record = self.controller.store.get("ForecastPolicy", tenant, name)
            if record is None:
                return
            status = change(dict(record.value.get("status") or {}))
            value = {**record.value, "status": status}
            if self.controller.store.txn([Compare("ForecastPolicy", tenant, name, record.revision),
                                          *self.controller.fence],
                                         [Put("ForecastPolicy", tenant, name, value)]).succeeded:
                return

    # records -----------------------------------------------------------------------------------
    def _record_graph(self, tenant: str, policy: str, step: int, end: float, allocation, mean_bps, upper_bps,
                      interval_s: float, bands: dict | None = None, discrepancy: dict | None = None):
        """The predicted graph of this interval, kept with a bounded history (and as 'current')."""
        value = {"policy": policy, "step": step, "time": end, "interval": interval_s, "stitches": [
            {"from": p[0], "to": p[1], "bandwidthBps": bps, "path": list(path)}
            for p, h in sorted(allocation.state.held.items()) for path, bps in h.parts],
            "links": [{"arc": list(arc), "predictedLoadBps": round(load)}
                      for arc, load in sorted(allocation.predicted_load_bps.items())],
            "forecast": [{"from": p[0], "to": p[1], "meanBps": round(mean_bps[p]), "upperBps": round(upper_bps[p]),
                          **{k: round(v, 1) for k, v in (bands or {}).get(p, {}).items()}}
                         for p in sorted(mean_bps)],
            "discrepancy": discrepancy or {},
            "decisions": [{"action": d.action, "pair": list(d.pair), "bandwidthBps": d.bandwidth_bps,
                           "reason": d.reason, "forecastMeanBps": d.forecast_mean_bps,
                           "forecastUpperBps": d.forecast_upper_bps} for d in allocation.decisions]}
        store = self.controller.store
        ops = [Put(PREDICTED_KIND, tenant, f"{policy}.{step}", value), Put(PREDICTED_KIND, tenant, f"{policy}.current", value),
               Put(PREDICTED_KIND, tenant, "current", value)]
        expired = f"{policy}.{step - GRAPH_HISTORY}"  # one in, one out keeps the history bounded …
        if store.get(PREDICTED_KIND, tenant, expired) is not None:
            ops.append(Delete(PREDICTED_KIND, tenant, expired))
        if step % GRAPH_HISTORY == 0:  # … and a sweep now and then catches gaps, interval changes and
            ops += [Delete(PREDICTED_KIND, tenant, r.name) for r in store.list(PREDICTED_KIND, tenant)  # removed
                    if not r.name.endswith("current") and r.name != f"{policy}.{step}"  # policies
                    and (r.value.get("time", end) < end - GRAPH_HISTORY * r.value.get("interval", 300.0)
                         or not self._policy_exists(tenant, r.value.get("policy")))]
        store.txn([*self.controller.fence], ops)

    def _policy_exists(self, tenant: str, name: str | None) -> bool:
        return name is not None and self.controller.store.get("ForecastPolicy", tenant, name) is not None

    def _write_status(self, record, policy: ForecastPolicy, step: int, now: float, safe: dict[str, int],
                      run: PolicyRun, pairs: int, stitches: int = 0, extra: dict | None = None) -> None:
        """Record the interval in the policy's status (compare-and-swap, re-read and retried when the
        trainer wrote meanwhile; fenced, so a deposed leader's status does not land)."""
        for _ in range(20):
            current = self.controller.store.get("ForecastPolicy", record.namespace, record.name)
            if current is None:
                return
            status = dict(current.value.get("status") or {})
            model = dict(status.get("model") or {})
            if model.get("state", "waiting") == "waiting" and run.model == "baseline":
                model.update({"state": "baseline", "name": BASELINE_MODEL,
                              "message": f"forecasting with {BASELINE_MODEL} until {policy.spec.model} is trained"})
            status.update({"lastStep": step, "lastEnd": step * policy.spec.interval, "lastRun": now,
                           "safeIntervals": safe, "pairs": pairs, "stitches": stitches,
                           "telemetry": self._sources_ok, "message": run.message,
                           "observedGeneration": policy.metadata.generation, "model": model})
            if extra:
                status.update({k: ({**(status.get(k) or {}), **v} if k == "handled" else v) for k, v in extra.items()})
            value = {**current.value, "status": status}
            if self.controller.store.txn([Compare("ForecastPolicy", record.namespace, record.name, current.revision),
                                          *self.controller.fence],
                                         [Put("ForecastPolicy", record.namespace, record.name, value)]).succeeded:
                return
            if self.controller.fence and not self.controller.store.txn(self.controller.fence, []).succeeded:
                return  # no longer the leader: the new one runs this interval

def predicted_graph_at(store, tenant: str | None, at: float | None = None, policy: str | None = None):
    """The kept predicted graph of a tenant (any tenant: the latest written) in force at `at` (unix
    time; None: the newest), of one policy or any; a store Record or None."""
    if at is None:
        if tenant:
            return store.get(PREDICTED_KIND, tenant, f"{policy}.current" if policy else "current")
        current = [r for r in store.list(PREDICTED_KIND)
                   if r.name == "current" and (policy is None or r.value.get("policy") == policy)]
        return max(current, key=lambda r: r.revision) if current else None
    best = None
    for record in store.list(PREDICTED_KIND, tenant):
        value = record.value
        if record.name.endswith("current") or (policy is not None and value.get("policy") != policy):
            continue
        if at is not None and value.get("time", 0) > at:
            continue
        if best is None or (value.get("time", 0), value.get("step", 0)) > (best.value.get("time", 0),
                                                                           best.value.get("step", 0)):
            best = record
    return best


def approve_suggestion(controller: Controller, tenant: str, name: str) -> PolicyRun:
    """Apply one suggested decision now (suggest mode)."""
    from vnstitch.errors import Conflict, NotFound

    record = controller.store.get(SUGGESTION_KIND, tenant, name)
    if record is None:
        raise NotFound(f"suggestion '{name}' not found", field="name")
    value = record.value
    if value.get("state") != "pending":
        raise Conflict(f"suggestion '{name}' is {value.get('state')}", field="name")
    policy_record = controller.store.get("ForecastPolicy", tenant, value["policy"])
    if policy_record is None:
        raise NotFound(f"forecast policy '{value['policy']}' not found", field="policy")
    policy = ForecastPolicy.model_validate(policy_record.value)
    if policy.status.last_step is not None and value["step"] < policy.status.last_step:
        raise Conflict(f"suggestion '{name}' is stale: interval {policy.status.last_step} has run since",
                       field="name")
    pair = (value["from"], value["to"])
    parts = tuple((tuple(p["path"]), float(p["bandwidthBps"])) for p in value["parts"])
    decision = Decision(value["action"], pair, value["bandwidthBps"], parts[0][0] if parts else (),
                        value["reason"], value["forecastMeanBps"], value["forecastUpperBps"],
                        parts if len(parts) > 1 else ())
    run = PolicyRun(f"{tenant}/{value['policy']}", value["step"], [decision])
    controller.refresh()
    loop = ProactiveLoop(controller, None, train=False)  # its admission half only: no telemetry, no model
    loop._apply(tenant, value["policy"], policy.spec, [decision], loop._held(tenant, value["policy"], {}), run)
    outcome = "approved" if run.applied or value["action"] == "terminate" or not run.refused else "refused"
    controller.store.txn([Compare(SUGGESTION_KIND, tenant, name, record.revision)],
                         [Put(SUGGESTION_KIND, tenant, name, {**value, "state": outcome, "refused": run.refused})])
    return run


def _stitch_doc(tenant: str, policy: str, spec, decision: Decision, part: int, path, bps: float):
    src, dst = decision.pair
    vm_pair = "/" in src and "/" in dst

    def end(name: str) -> dict:
        network, _, member = name.partition("/")
        return {"network": network, **({"member": member} if member else {})}

    return parse_resource({
        "kind": "Stitch",
        "metadata": {"name": stitch_name(policy, decision.pair, part), "tenant": tenant,
                     "labels": {POLICY_LABEL: policy},
                     "annotations": {PAIR_ANNOTATION: pair_key(decision.pair), PART_ANNOTATION: str(part),
                                     REASON_ANNOTATION: f"{decision.action}: {decision.reason}"}},
        "spec": {"type": "direct" if vm_pair else "bandwidth", "from": end(src if vm_pair else src.split("/")[0]),
                 "to": end(dst if vm_pair else dst.split("/")[0]), "bandwidth": round(bps),
                 "origin": "forecast", "priority": spec.priority, "symmetric": False, "path": list(path)}})


def _figures(scores: dict) -> dict:
    """Holdout figures as a retrain record keeps them (rounded; None where unknown)."""
    return {k: (round(float(scores[k]), 4) if scores.get(k) is not None and np.isfinite(scores[k]) else None)
            for k in ("nmae", "bias", "coverage80", "coverage90") if k in scores}


def _stamps(end: float, steps: int, interval_s: float) -> np.ndarray:
    """datetime64 stamps of the `steps` intervals ending at `end` (each stamped at its start)."""
    starts = end - interval_s * np.arange(steps, 0, -1)
    return (starts * 1e3).astype("int64").astype("datetime64[ms]")


def _baseline(history, observed, end: float, interval_s: float, pairs: list[Pair]):
    from vnstitch.forecast import get_forecaster

    rows = observed.any(axis=1)
    first = int(np.argmax(rows))
    model = get_forecaster(BASELINE_MODEL)
    stamps = _stamps(end, history.shape[0], interval_s)[first:]
    return model.fit(np.nan_to_num(history[first:], nan=0.0) / 1e6, stamps, list(pairs),
                     observed=observed[first:], interval_seconds=interval_s)


def _forecast(model, history, observed, end: float, spec, pairs: list[Pair]):
    """(mean, upper, bands) bit/s per pair: the max over the horizon of the mean and of the policy's quantile,
    and the next interval's point and 80/90% bands (what the next interval's discrepancy is scored on)."""
    context = max(model.context_steps, model.min_history_steps)
    stamps = _stamps(end, history.shape[0], spec.interval)
    tail = slice(max(0, history.shape[0] - context), history.shape[0])
    forecast = model.predict(np.nan_to_num(history[tail], nan=0.0) / 1e6, horizon=spec.horizon,
                             timestamps=stamps[tail], observed=observed[tail])
    mean = np.maximum(forecast.mean.max(axis=1), 0.0) * 1e6
    upper = np.maximum(forecast.quantile(spec.quantile).max(axis=1), 0.0) * 1e6
    return ({p: float(mean[i]) for i, p in enumerate(pairs)}, {p: float(upper[i]) for i, p in enumerate(pairs)},
            next_step_bands(forecast, pairs))


__all__ = ["ProactiveLoop", "approve_suggestion", "predicted_graph_at", "ModelStore", "Trainer", "PolicyRun", "stitch_name", "POLICY_LABEL"]
