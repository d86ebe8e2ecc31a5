"""Loaders: Abilene (.npz, CFR-RL text), long CSV/Parquet, SNDlib demand XML, .hist text."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import ForecastInputError
from .series import TrafficSeries, pairs_from_nodes, to_datetime64

ABILENE_NODES = ("ATLAM5", "ATLAng", "CHINng", "DNVRng", "HSTNng", "IPLSng",
                 "KSCYng", "LOSAng", "NYCMng", "SNVAng", "STTLng", "WASHng")
ABILENE_START = "2004-03-01T00:00"
RAW_100B_PER_5MIN_TO_MBPS = 8.0 / 3e6  # Zhang's unit: 100 bytes per 5 minutes
BUNDLED_ABILENE = "abilene_tm_14d.npz"
_SNDLIB_NS = {"s": "http://sndlib.zib.de/network"}


def load_bundled_abilene() -> TrafficSeries:
    """The 14 contiguous days of Abilene shipped with the package (2004-03-01..14, 144 pairs)."""
    ref = resources.files("vnstitch.data").joinpath(BUNDLED_ABILENE)
    with resources.as_file(ref) as path:
        return load_abilene_npz(path)


def load_abilene_npz(path, block: str = "first") -> TrafficSeries:
    """An Abilene .npz (tm (T, n, n) Mbit/s, timestamps, nodes); block='first' keeps the first gap-free run."""
    path = _existing(path)
    with np.load(path, allow_pickle=False) as data:
        missing = {"tm", "timestamps", "nodes"} - set(data.files)
        if missing:
            raise ForecastInputError(f"{path}: missing arrays {sorted(missing)}")
        tm, ts, nodes = data["tm"], data["timestamps"], [str(n) for n in data["nodes"]]
    if tm.ndim != 3 or tm.shape[1:] != (len(nodes), len(nodes)):
        raise ForecastInputError(f"{path}: tm has shape {tm.shape}, expected (steps, {len(nodes)}, {len(nodes)})")
    stamps = to_datetime64(ts)
    if block == "first":
        steps = np.diff(stamps).astype(np.int64)
        breaks = np.flatnonzero(steps != steps.min()) if len(steps) else []
        stop = int(breaks[0]) + 1 if len(breaks) else len(stamps)
        tm, stamps = tm[:stop], stamps[:stop]
    elif block != "all":
        raise ForecastInputError(f"block must be 'first' or 'all'; got '{block}'")
    return TrafficSeries.from_array(tm.reshape(len(stamps), -1).astype(float), stamps, pairs_from_nodes(nodes))


def load_cfr_rl(path, nodes: Sequence[str] = ABILENE_NODES, start: str = ABILENE_START,
                interval_seconds: float = 300.0, include_diagonal: bool = True) -> TrafficSeries:
    """CFR-RL AbileneTM text (one n×n matrix per line, 100 bytes/5 min) → Mbit/s."""
    matrix = _read_matrix_lines(path, len(nodes)) * RAW_100B_PER_5MIN_TO_MBPS
    return _from_matrices(matrix, nodes, start, interval_seconds, include_diagonal)


def load_hist(path, nodes: Sequence[str], interval_seconds: float, start: str = "2000-01-01T00:00",
              include_diagonal: bool = False) -> TrafficSeries:
    """A .hist file (DOTE/FIGRET form: one n×n matrix per line in bit/s) → Mbit/s."""
    matrix = _read_matrix_lines(path, len(nodes)) / 1e6
    return _from_matrices(matrix, nodes, start, interval_seconds, include_diagonal)


def load_long_table(path, timestamp_col: str = "timestamp", source_col: str = "source",
                    destination_col: str = "destination", value_col: str = "value",
                    value_scale: float = 1.0, interval_seconds: float | None = None) -> TrafficSeries:
    """CSV or Parquet with one row per (timestamp, source, destination, value); value × value_scale = Mbit/s."""
    from vnstitch.optional import require

    pd = require("pandas", "reading a CSV or Parquet table")
    path = _existing(path)
    frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    return series_from_frame(frame, timestamp_col, source_col, destination_col, value_col, value_scale, interval_seconds)


def series_from_frame(frame, timestamp_col="timestamp", source_col="source", destination_col="destination",
                      value_col="value", value_scale=1.0, interval_seconds=None) -> TrafficSeries:
    """Long DataFrame → TrafficSeries; (time, pair) cells absent from the frame are unobserved gaps."""
    cols = [timestamp_col, source_col, destination_col, value_col]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ForecastInputError(f"table lacks columns {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise ForecastInputError("table has no rows")
    values = frame[value_col].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        row = int(np.argmax(~np.isfinite(values)))
        raise ForecastInputError(f"column '{value_col}' has NaN or inf (first at row {row}); drop the row to mark a gap")
    if (values < 0).any():
        row = int(np.argmax(values < 0))
        raise ForecastInputError(f"column '{value_col}' has negative value {values[row]:g} at row {row}")
    stamps = to_datetime64(frame[timestamp_col].to_numpy())
    pair_keys = list(zip(frame[source_col].astype(str), frame[destination_col].astype(str)))
    times, t_idx = np.unique(stamps, return_inverse=True)
    pairs = sorted(set(pair_keys))
    pair_pos = {p: i for i, p in enumerate(pairs)}
    p_idx = np.array([pair_pos[p] for p in pair_keys])
    seen = np.zeros((len(times), len(pairs)), int)
    np.add.at(seen, (t_idx, p_idx), 1)
    if (seen > 1).any():
        t, p = np.argwhere(seen > 1)[0]
        raise ForecastInputError(f"pair {pairs[p][0]}->{pairs[p][1]} has {seen[t, p]} rows at {times[t]}")
    grid = np.zeros(seen.shape)
    grid[t_idx, p_idx] = values * value_scale
    return TrafficSeries.from_array(grid, times, pairs, seen > 0, interval_seconds)


def load_sndlib_xml(paths: str | Path | Iterable, nodes: Sequence[str] | None = None,
                    interval_seconds: float | None = None) -> TrafficSeries:
    """SNDlib demand XML files (one per interval, Mbit/s, time in <meta><time>) or a folder of them.
    A file without any demand is a gap (the interval was not measured), not an interval of zero traffic."""
    files = _xml_files(paths)
    stamps, rows, seen, node_order = [], [], [], list(nodes) if nodes else None
    for file in files:
        root = _parse_xml(file)
        time_text = root.findtext("s:meta/s:time", default=None, namespaces=_SNDLIB_NS)
        if time_text is None:
            raise ForecastInputError(f"{file}: no <meta><time> element")
        if node_order is None:
            node_order = [n.get("id") for n in root.findall(".//s:nodes/s:node", _SNDLIB_NS)]
        pos = {n: i for i, n in enumerate(node_order)}
        matrix = np.zeros((len(node_order), len(node_order)))
        demands = root.findall(".//s:demands/s:demand", _SNDLIB_NS)
        for demand in demands:
            src = demand.findtext("s:source", namespaces=_SNDLIB_NS)
            dst = demand.findtext("s:target", namespaces=_SNDLIB_NS)
            if src not in pos or dst not in pos:
                raise ForecastInputError(f"{file}: demand {src}->{dst} names a node outside {node_order}")
            try:
                matrix[pos[src], pos[dst]] += float(demand.findtext("s:demandValue", namespaces=_SNDLIB_NS))
            except (TypeError, ValueError):
                raise ForecastInputError(f"{file}: demand {src}->{dst} has no numeric <demandValue>") from None
        stamps.append(time_text.strip())
        rows.append(matrix.reshape(-1))
        seen.append(bool(demands))
    times = to_datetime64(stamps)
    order = np.argsort(times, kind="stable")
    observed = np.repeat(np.array(seen)[order][:, None], len(node_order) ** 2, axis=1)
    if not observed.any():
        raise ForecastInputError(f"{paths}: no SNDlib file holds a demand (every interval is a gap)")
    return TrafficSeries.from_array(np.array(rows)[order], times[order], pairs_from_nodes(node_order), observed,
                                    interval_seconds)


def load_dataset(spec: str, data_dir=None, nodes: Sequence[str] | None = None,
                 interval_seconds: float | None = None) -> TrafficSeries:
    """'abilene' (bundled 14 days), 'abilene-full' (needs data_dir), or a file path by extension.

    `nodes`: the node order of a .hist file (required there), of an AbileneTM file, or the SNDlib nodes to
    keep; `interval_seconds`: the time between matrices (required for .hist; for tables and SNDlib XML it
    overrides what the timestamps say; Abilene's .npz and AbileneTM files are 5-minute data by format)."""
    if interval_seconds is not None and not interval_seconds > 0:
        raise ForecastInputError(f"the interval must be a positive duration; got {interval_seconds}")
    path = Path(spec) if data_dir is None or Path(spec).is_absolute() else Path(data_dir) / spec
    name = path.name
    takes_nodes = name.endswith((".hist", ".hist.gz", ".xml")) or name.startswith("AbileneTM") or path.is_dir()
    if nodes and not takes_nodes:
        raise ForecastInputError(f"a node order (--nodes) applies to .hist, AbileneTM and SNDlib XML data, "
                                 f"not to '{spec}'")
    if spec in ("abilene", "abilene-full") or name.endswith(".npz") or name.startswith("AbileneTM"):
        if interval_seconds is not None and interval_seconds != 300:
            raise ForecastInputError(f"'{spec}' holds 5-minute matrices; --interval {interval_seconds:g} s does "
                                     f"not describe it (aggregate the data instead)")
        if name.startswith("AbileneTM"):   # its unit is bytes per 5 minutes: the interval is part of it
            return load_cfr_rl(path, **({"nodes": list(nodes)} if nodes else {}))
        if spec == "abilene":
            return load_bundled_abilene()
        if spec == "abilene-full":
            if data_dir is None:
                raise ForecastInputError("dataset 'abilene-full' needs --data-dir (the folder holding abilene/)")
            return load_abilene_npz(Path(data_dir) / "abilene" / "abilene_tm_sndlib_mbps.npz")
        return load_abilene_npz(path)
    if name.endswith((".hist", ".hist.gz")):
        if not nodes or interval_seconds is None:
            raise ForecastInputError(f"'{spec}': a .hist file needs --nodes (its node order) and --interval "
                                     f"(the time between its matrices)")
        return load_hist(path, list(nodes), interval_seconds)
    if name.endswith((".csv", ".parquet", ".pq", ".csv.gz")):
        return load_long_table(path, interval_seconds=interval_seconds)
    if path.is_dir() or name.endswith(".xml"):
        return load_sndlib_xml(path, nodes=nodes, interval_seconds=interval_seconds)
    raise ForecastInputError(f"cannot tell the format of '{spec}'; use abilene, abilene-full, .npz, .csv, "
                             f".parquet, SNDlib .xml or a folder of them, AbileneTM*, or .hist (with --nodes "
                             f"and --interval)")


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ForecastInputError(f"{path} does not exist")
    return path


def _read_matrix_lines(path, n_nodes: int) -> np.ndarray:
    path = _existing(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = np.array(line.split(), dtype=float)
            except ValueError:
                raise ForecastInputError(f"{path}:{number}: not a line of numbers") from None
            if row.size != n_nodes * n_nodes:
                raise ForecastInputError(f"{path}:{number}: {row.size} numbers, expected {n_nodes}×{n_nodes}"
                                         f" = {n_nodes * n_nodes} for the given node order")
            rows.append(row)
    if not rows:
        raise ForecastInputError(f"{path}: no matrices")
    return np.array(rows)


def _from_matrices(matrix, nodes, start, interval_seconds, include_diagonal) -> TrafficSeries:
    n = len(nodes)
    if not include_diagonal:
        matrix = matrix.reshape(-1, n, n).copy()
        matrix[:, np.arange(n), np.arange(n)] = 0.0
        matrix = matrix.reshape(-1, n * n)
    return TrafficSeries.from_array(matrix, None, pairs_from_nodes(nodes), None, interval_seconds,
                                    start=np.datetime64(start, "s"))


def _xml_files(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        path = _existing(paths)
        files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    else:
        files = [_existing(p) for p in paths]
    if not files:
        raise ForecastInputError(f"no SNDlib .xml files in {paths}")
    return files


def _parse_xml(file: Path):
    try:
        return ET.parse(file).getroot()
    except ET.ParseError as exc:
        raise ForecastInputError(f"{file}: not valid XML ({exc})") from None
