"""Rate a battle log offline: FastChat's battle format in, a leaderboard out.

A battle has ``model_a``, ``model_b`` and ``winner`` in ``{"model_a", "model_b", "tie",
"tie (bothbad)"}``. Files are CSV with a header row, JSON Lines (one object per line), a
JSON array of objects (FastChat's ``clean_battle_*.json``) or Parquet; other columns are
ignored, except ``anony`` when only anonymous battles are wanted.

Files are read by pyarrow column by column: names become dictionary codes and outcomes small
integers, so no Python object is made per battle. A bad row is located (its line, array item
or Parquet row) only once it has been found; errors pyarrow raises (broken JSON, a field of
the wrong type, a short CSV row) are located by reading the file again with Python's parsers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pa_parquet
from numpy.typing import NDArray

from ratings.bradley_terry import aggregate_pairs, bootstrap_bt, fit_bt, intervals
from ratings.elo import online_elo

__all__ = ["WINNERS", "Battle", "BattleLog", "battles_from_rows", "load_battles", "read_battles", "rate_battles"]

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
"""Accepted ``winner`` values; a :class:`BattleLog` stores the index into this tuple."""
_SCORE_A = np.array([1.0, 0.0, 0.5, 0.5])
_FIELDS = ("model_a", "model_b", "winner")

SKIP_REASONS = ("missing field", "empty model name", "same model on both sides", "unknown winner")
"""Kinds of refused rows, in the order they are checked, as counted in ``BattleLog.skipped``."""

Battle = tuple[str, str, str]


@dataclass(frozen=True)
class BattleLog:
    """Battles as columns: ``model_a``/``model_b`` index ``models`` (sorted names), ``outcome``
    indexes :data:`WINNERS`, all in file order. ``skipped`` counts rows refused per reason
    (only with ``skip_bad``); ``left_out`` counts rows dropped by the ``anony`` filter."""

    models: tuple[str, ...]
    model_a: NDArray[np.intp]
    model_b: NDArray[np.intp]
    outcome: NDArray[np.int8]
    skipped: dict[str, int] = field(default_factory=dict)
    left_out: int = 0

    def __len__(self) -> int:
        return int(self.outcome.size)

    def rows(self) -> list[Battle]:
        """The battles as ``(model_a, model_b, winner)`` tuples (for small logs)."""
        names = self.models
        return [
            (names[a], names[b], WINNERS[o])
            for a, b, o in zip(self.model_a.tolist(), self.model_b.tolist(), self.outcome.tolist())
        ]


# ---------------------------------------------------------------------------------------------
# Columns to codes


def _numpy_view(array: pa.Array) -> NDArray:
    """The values of a fixed-width integer or boolean array as numpy, with nulls as -1 (False
    for booleans), read from its buffers: pyarrow's own ``to_numpy`` and ``fill_null`` import
    pandas when it is installed, a tenth of a second at start-up."""
    kind, start, length = array.type, array.offset, len(array)
    validity, data = array.buffers()[:2]
    if pa.types.is_boolean(kind):
        values = _bits(data, start, length)
        return values & _bits(validity, start, length) if array.null_count else values
    dtype = np.dtype(f"{'i' if pa.types.is_signed_integer(kind) else 'u'}{kind.bit_width // 8}")
    values = np.frombuffer(data, dtype=dtype, count=length, offset=start * dtype.itemsize).astype(np.intp)
    if array.null_count:
        values[~_bits(validity, start, length)] = -1
    return values


def _bits(buffer: pa.Buffer, start: int, length: int) -> NDArray[np.bool_]:
    return np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")[start : start + length].astype(bool)


class _Column:
    """One string column as dictionary codes: ``codes`` (-1 for null) into ``values`` (stripped)."""

    def __init__(self, column: pa.ChunkedArray | pa.Array, name: str, where: str) -> None:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_dictionary(array.type):
            encoded = array
        else:
            kind = array.type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                raise ValueError(f"{where}: column {name} must hold strings, not {array.type}")
            encoded = array.dictionary_encode()
        value_type = encoded.type.value_type
        if len(encoded.dictionary) and not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
            raise ValueError(f"{where}: column {name} must hold strings, not {value_type}")
        self.codes = _numpy_view(encoded.indices)
        self.raw = [str(v) for v in encoded.dictionary.to_pylist()]
        self.values = [v.strip() for v in self.raw]


def _codes_to_log(
    table: pa.Table, *, anony_only: bool, skip_bad: bool, locate: Callable[[int], str], where: str
) -> BattleLog:
    """Validate and encode the battle columns of ``table``; ``locate(k)`` names its k-th row."""
    col_a = _Column(table.column("model_a"), "model_a", where)
    col_b = _Column(table.column("model_b"), "model_b", where)
    col_w = _Column(table.column("winner"), "winner", where)
    rows = col_a.codes.size
    kept = np.ones(rows, dtype=bool)
    left_out = 0
    if anony_only:
        flags = table.column("anony").combine_chunks()
        if not (pa.types.is_boolean(flags.type) or pa.types.is_null(flags.type)):
            raise ValueError(f"{where}: column anony must hold booleans, not {flags.type}")
        if flags.null_count == len(flags):
            raise ValueError(f"{where}: no row has an anony field")
        kept = _numpy_view(flags) if len(flags) else np.zeros(0, dtype=bool)
        left_out = int(rows - kept.sum())

    names = sorted(({v for v in col_a.values} | {v for v in col_b.values}) - {""})
    index = {name: i for i, name in enumerate(names)}
    # lookup tables end with two sentinels: -2 for an empty name, -1 (last) for null
    lut_a = np.array([index.get(v, -2) for v in col_a.values] + [-1], dtype=np.intp)
    lut_b = np.array([index.get(v, -2) for v in col_b.values] + [-1], dtype=np.intp)
    winner_code = {w: i for i, w in enumerate(WINNERS)}
    lut_w = np.array([winner_code.get(v, -2) for v in col_w.values] + [-1], dtype=np.intp)
    a = lut_a[col_a.codes]
    b = lut_b[col_b.codes]
    w = lut_w[col_w.codes]

    problems = (
        (a == -1) | (b == -1) | (w == -1),
        (a == -2) | (b == -2),
        (a == b) & (a >= 0),
        w == -2,
    )
    bad = np.zeros(rows, dtype=bool)
    skipped: dict[str, int] = {}
    for reason, mask in zip(SKIP_REASONS, problems):
        mask = mask & kept & ~bad
        count = int(mask.sum())
        if count:
            skipped[reason] = count
            bad |= mask
    if bad.any() and not skip_bad:
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{locate(first)}: {_problem(first, a, b, w, col_a, col_b, col_w)}")
    kept &= ~bad
    if not skip_bad:
        skipped = {}
    a, b, w = a[kept], b[kept], w[kept]
    if a.size == 0:
        raise ValueError(f"{where}: no battles found")
    used = np.zeros(len(names), dtype=bool)
    used[a] = True
    used[b] = True
    compact = np.cumsum(used) - 1
    models = tuple(name for name, u in zip(names, used.tolist()) if u)
    return BattleLog(
        models=models,
        model_a=compact[a].astype(np.intp),
        model_b=compact[b].astype(np.intp),
        outcome=w.astype(np.int8),
        skipped=skipped,
        left_out=left_out,
    )


def _problem(k: int, a: NDArray, b: NDArray, w: NDArray, col_a: _Column, col_b: _Column, col_w: _Column) -> str:
    """The message for bad row ``k``, checked in the order of :data:`SKIP_REASONS`."""
    missing = [name for name, codes in (("model_a", a), ("model_b", b), ("winner", w)) if codes[k] == -1]
    if missing:
        return f"missing {', '.join(missing)}"
    if a[k] == -2 or b[k] == -2:
        return "empty model name"
    if a[k] == b[k]:
        return f"model_a and model_b are the same model {col_a.values[col_a.codes[k]]!r}"
    return f"winner {col_w.raw[col_w.codes[k]]!r} is not one of {', '.join(WINNERS)}"


# ---------------------------------------------------------------------------------------------
# Formats


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    text = head.decode("utf-8-sig", errors="replace")
    first = next(csv.reader(io.StringIO(text, newline="")), [])
    return [h.strip() for h in first]


def _csv_locate(path: Path, target: int) -> int:
    """File line of data row ``target`` (0-based; blank lines are not rows), as Python's csv sees it."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        count = -1
        for record in reader:
            if record:
                count += 1
                if count == target:
                    return reader.line_num
    return reader.line_num


def _csv_explain(path: Path, header: list[str], exc: Exception) -> str:
    """Find the line behind a pyarrow CSV error: bad UTF-8 or a row with the wrong field count."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        return f"{path}, line {line}: not valid UTF-8"
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
    try:
        next(reader, None)
        for record in reader:
            if record and len(record) != len(header):
                return f"{path}, line {reader.line_num}: expected {len(header)} fields, got {len(record)}"
    except csv.Error as err:
        return f"{path}, line {reader.line_num}: {err}"
    return f"{path}: {exc}"


def _read_csv(path: Path, anony_only: bool) -> tuple[pa.Table, Callable[[int], str]]:
    header = _csv_header(path)
    wanted = list(_FIELDS) + (["anony"] if anony_only else [])
    absent = [f for f in wanted if f not in header]
    if absent:
        raise ValueError(f"{path}, line 1: CSV header lacks {', '.join(absent)}")
    types: dict[str, pa.DataType] = {f: pa.string() for f in _FIELDS}
    types["anony"] = pa.bool_()
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                include_columns=wanted,
                column_types={f: types[f] for f in wanted},
                strings_can_be_null=False,
                true_values=["true", "True", "TRUE", "1"],
                false_values=["false", "False", "FALSE", "0", ""],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ValueError(_csv_explain(path, header, exc)) from None
    return table, lambda k: f"{path}, line {_csv_locate(path, k)}"


def _json_schema(anony_only: bool) -> pa.Schema:
    fields = [pa.field(f, pa.string()) for f in _FIELDS]
    if anony_only:
        fields.append(pa.field("anony", pa.bool_()))
    return pa.schema(fields)


def _check_record(record: Any, where: str, anony_only: bool) -> None:
    """Raise for a record pyarrow cannot take: not an object, or a field of the wrong type."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object with model_a, model_b and winner")
    for name in _FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be a string, got {value!r}")
    value = record.get("anony")
    if anony_only and value is not None and not isinstance(value, bool):
        raise ValueError(f"{where}: anony must be true or false, got {value!r}")


def _nonblank_lines(raw: bytes) -> Iterable[tuple[int, bytes]]:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.strip():
            yield number, line


def _read_jsonl(path: Path, anony_only: bool) -> tuple[pa.Table, Callable[[int], str]]:
    try:
        table = pa_json.read_json(
            path,
            read_options=pa_json.ReadOptions(block_size=1 << 24),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_json_schema(anony_only), unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowInvalid as exc:
        raw = path.read_bytes()
        for number, line in _nonblank_lines(raw):
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except UnicodeDecodeError:
                raise ValueError(f"{where}: not valid UTF-8") from None
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
            _check_record(record, where, anony_only)
        raise ValueError(f"{path}: {exc}") from None

    def locate(k: int) -> str:
        for count, (number, _) in enumerate(_nonblank_lines(path.read_bytes())):
            if count == k:
                return f"{path}, line {number}"
        return str(path)

    return table, locate


def _read_json_array(path: Path, anony_only: bool) -> tuple[pa.Table, Callable[[int], str]]:
    """The array becomes the one value of a wrapping object, ``{"battles": [...]}``, which
    pyarrow parses in one block into a list of structs: one struct per battle."""
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    document = b'{"battles": ' + raw + b"}"
    schema = pa.schema([pa.field("battles", pa.list_(pa.struct(list(_json_schema(anony_only)))))])
    try:
        wrapped = pa_json.read_json(
            pa.BufferReader(document),
            read_options=pa_json.ReadOptions(block_size=len(document) + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore", newlines_in_values=True
            ),
        )
    except pa.ArrowInvalid as exc:
        try:
            records = json.loads(raw)
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not valid UTF-8") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {err.lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON array of battles")
        for number, record in enumerate(records, start=1):
            _check_record(record, f"{path}, item {number}", anony_only)
        raise ValueError(f"{path}: {exc}") from None
    items = wrapped.column("battles").combine_chunks()
    if len(items) != 1 or not items.is_valid()[0].as_py():
        raise ValueError(f"{path}: expected a JSON array of battles")
    battles = items.flatten()
    table = pa.table({name: battles.field(name) for name in battles.type.names})
    return table, lambda k: f"{path}, item {k + 1}"


def _read_parquet(path: Path, anony_only: bool) -> tuple[pa.Table, Callable[[int], str]]:
    try:
        parquet = pa_parquet.ParquetFile(path)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: not a Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    wanted = list(_FIELDS) + (["anony"] if anony_only else [])
    absent = [f for f in wanted if f not in names]
    if absent:
        raise ValueError(f"{path}: Parquet file lacks {', '.join(absent)}")
    return parquet.read(columns=wanted), lambda k: f"{path}, row {k + 1}"


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if first == b"[":
        return "array"
    if first == b"{" or suffix == ".json":
        return "jsonl"
    return "csv"


def load_battles(path: str | Path, *, anony_only: bool = False, skip_bad: bool = False) -> BattleLog:
    """Read a battle log into columns.

    The format comes from the extension (``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``/``.pq``),
    else from the content (Parquet magic, ``[`` a JSON array, ``{`` JSON Lines, anything else
    CSV). ``anony_only`` keeps rows whose ``anony`` is true (the column must exist). A row with
    a missing field, an empty model name, the same model on both sides or an unknown winner
    raises ``ValueError`` naming the file, the line (array item, Parquet row) and the value;
    with ``skip_bad`` such rows are dropped and counted in ``BattleLog.skipped``. A file
    without battles raises ``ValueError``; ``OSError`` propagates for unreadable files.
    """
    path = Path(path)
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "array": _read_json_array, "parquet": _read_parquet}
    table, locate = reader[_kind(path)](path, anony_only)
    return _codes_to_log(table, anony_only=anony_only, skip_bad=skip_bad, locate=locate, where=str(path))


def read_battles(path: str | Path) -> list[Battle]:
    """``(model_a, model_b, winner)`` tuples of a battle log (see :func:`load_battles`)."""
    return load_battles(path).rows()


def battles_from_rows(battles: Iterable[Sequence[str]]) -> BattleLog:
    """A :class:`BattleLog` from ``(model_a, model_b, winner)`` tuples; raises ``ValueError``
    naming the first malformed battle (1-based)."""
    rows = [tuple(b) for b in battles]
    for number, row in enumerate(rows, start=1):
        if len(row) != 3 or row[2] not in WINNERS or row[0] == row[1]:
            raise ValueError(f"battle {number}: expected (model_a, model_b, winner) with a known winner")
    models = tuple(sorted({r[0] for r in rows} | {r[1] for r in rows}))
    index = {m: i for i, m in enumerate(models)}
    code = {w: i for i, w in enumerate(WINNERS)}
    return BattleLog(
        models=models,
        model_a=np.array([index[r[0]] for r in rows], dtype=np.intp),
        model_b=np.array([index[r[1]] for r in rows], dtype=np.intp),
        outcome=np.array([code[r[2]] for r in rows], dtype=np.int8),
    )


def rate_battles(
    battles: BattleLog | Iterable[Sequence[str]],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    k: float = 4.0,
    base: float = 10.0,
    scale: float = 400.0,
    init_rating: float = 1000.0,
) -> list[dict[str, Any]]:
    """Leaderboard rows ``{model, bt, bt_ci_low, bt_ci_high, elo, n}``, sorted by ``bt`` descending.

    ``battles`` is a :class:`BattleLog` or ``(model_a, model_b, winner)`` tuples. ``bt`` is
    the Bradley-Terry rating (ties half a win each way) centred at mean ``init_rating``;
    ``bt_ci_low``/``bt_ci_high`` the percentile interval at ``level`` over ``bootstrap``
    multinomial resamples of the votes (``None`` when ``bootstrap == 0``); ``elo`` the online
    Elo after all battles in order (K = ``k``); ``n`` the number of battles.
    """
    log = battles if isinstance(battles, BattleLog) else battles_from_rows(battles)
    if len(log) == 0:
        return []
    n = len(log.models)
    idx_a, idx_b, outcome = log.model_a, log.model_b, log.outcome
    # one row per (ordered pair, outcome) cell: the counts are all the fit needs
    cell = (idx_a * n + idx_b) * 4 + outcome
    if n * n * 4 <= max(4 * cell.size, 1 << 22):
        cells = np.bincount(cell, minlength=n * n * 4).reshape(n * n, 4)
        keys = np.flatnonzero(cells.any(axis=1))
        counts = cells[keys].astype(np.float64)
    else:
        seen, tally = np.unique(cell, return_counts=True)
        keys, slot = np.unique(seen // 4, return_inverse=True)
        counts = np.zeros((keys.size, 4))
        np.add.at(counts, (slot, seen % 4), tally)
    pairs = aggregate_pairs(n, keys // n, keys % n, counts[:, 0], counts[:, 1], counts[:, 2] + counts[:, 3])
    fit = {"base": base, "scale": scale, "init_rating": init_rating}
    bt = fit_bt(n, *pairs, **fit)
    if bootstrap > 0:
        samples = bootstrap_bt(n, *pairs, rounds=bootstrap, seed=seed, **fit)
        low, high = intervals(samples, level)
    else:
        low = high = np.full(n, np.nan)
    elo = online_elo(idx_a, idx_b, _SCORE_A[outcome], n, k=k, base=base, scale=scale, init_rating=init_rating)
    games = np.bincount(idx_a, minlength=n) + np.bincount(idx_b, minlength=n)

    def maybe(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    table = [
        {
            "model": log.models[i],
            "bt": float(bt[i]),
            "bt_ci_low": maybe(low[i]),
            "bt_ci_high": maybe(high[i]),
            "elo": float(elo[i]),
            "n": int(games[i]),
        }
        for i in range(n)
    ]
    table.sort(key=lambda row: (-row["bt"], row["model"]))
    return table
