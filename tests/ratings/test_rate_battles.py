import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ratings.battles import load_battles, rate_battles, read_battles

ROOT = Path(__file__).resolve().parents[2]
GAP_3_TO_1 = 400.0 * math.log10(3.0)

BATTLES = [
    ("alpha", "beta", "model_a"),
    ("beta", "alpha", "model_b"),
    ("alpha", "beta", "tie"),
    ("beta", "alpha", "tie (bothbad)"),
    ("alpha", "gamma", "model_a"),
    ("gamma", "beta", "model_a"),
    ("gamma", "alpha", "model_b"),
    ("beta", "gamma", "tie"),
]


def _write_jsonl(path: Path, battles) -> Path:
    path.write_text(
        "".join(json.dumps({"model_a": a, "model_b": b, "winner": w, "judge": "x"}) + "\n" for a, b, w in battles),
        encoding="utf-8",
    )
    return path


def test_it_reads_fastchat_jsonl_battles_and_ignores_extra_fields_and_blank_lines(tmp_path):
    path = _write_jsonl(tmp_path / "battles.jsonl", BATTLES)
    path.write_text(path.read_text() + "\n\n", encoding="utf-8")
    assert read_battles(path) == BATTLES


def test_it_reads_csv_battles_with_quoted_names(tmp_path):
    path = tmp_path / "battles.csv"
    path.write_text('model_a,model_b,winner\n"Model, large",small,model_a\nsmall,"Model, large",tie (bothbad)\n')
    assert read_battles(path) == [("Model, large", "small", "model_a"), ("small", "Model, large", "tie (bothbad)")]


def test_it_reads_a_json_array_and_sniffs_files_without_an_extension(tmp_path):
    array = tmp_path / "battles.json"
    array.write_text(json.dumps([{"model_a": a, "model_b": b, "winner": w} for a, b, w in BATTLES]))
    assert read_battles(array) == BATTLES
    lines = _write_jsonl(tmp_path / "battles_log", BATTLES)
    assert read_battles(lines) == BATTLES
    table = tmp_path / "battles_table"
    table.write_text("winner,model_a,model_b\nmodel_b,x,y\n")
    assert read_battles(table) == [("x", "y", "model_b")]


def test_an_unknown_winner_is_reported_with_its_line_number(tmp_path):
    path = _write_jsonl(tmp_path / "battles.jsonl", BATTLES[:2])
    path.write_text(path.read_text() + json.dumps({"model_a": "a", "model_b": "b", "winner": "draw"}) + "\n")
    with pytest.raises(ValueError, match=r"line 3: winner 'draw'"):
        read_battles(path)


def test_broken_json_missing_fields_and_self_battles_are_reported_with_their_line(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"model_a": "a", "model_b": "b", "winner": "tie"}\n{"model_a": "a", \n')
    with pytest.raises(ValueError, match=r"line 2: invalid JSON"):
        read_battles(path)
    path.write_text('{"model_a": "a", "winner": "tie"}\n')
    with pytest.raises(ValueError, match=r"line 1: missing model_b"):
        read_battles(path)
    path.write_text('{"model_a": "a", "model_b": "a", "winner": "tie"}\n')
    with pytest.raises(ValueError, match=r"line 1: model_a and model_b are the same"):
        read_battles(path)


def test_a_csv_without_the_needed_columns_or_with_a_bad_row_is_rejected(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("model_a,model_b,result\na,b,model_a\n")
    with pytest.raises(ValueError, match=r"line 1: CSV header lacks winner"):
        read_battles(path)
    path.write_text("model_a,model_b,winner\na,b,model_a\n\na,,model_b\n")
    with pytest.raises(ValueError, match=r"line 4: empty model name"):
        read_battles(path)


def test_an_empty_file_is_rejected(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match="no battles"):
        read_battles(path)


def test_rate_battles_reports_bt_with_intervals_elo_and_counts_sorted_by_bt():
    rows = rate_battles(BATTLES, bootstrap=200, seed=1)
    assert [set(r) for r in rows] == [{"model", "bt", "bt_ci_low", "bt_ci_high", "elo", "n"}] * 3
    assert [r["bt"] for r in rows] == sorted((r["bt"] for r in rows), reverse=True)
    by_model = {r["model"]: r for r in rows}
    assert {m: r["n"] for m, r in by_model.items()} == {"alpha": 6, "beta": 6, "gamma": 4}
    assert sum(r["bt"] for r in rows) / 3 == pytest.approx(1000.0)
    assert sum(r["elo"] for r in rows) / 3 == pytest.approx(1000.0)
    for r in rows:
        assert r["bt_ci_low"] <= r["bt"] <= r["bt_ci_high"]


def test_a_single_pair_gives_the_hand_computed_bt_gap_and_elo():
    rows = rate_battles([("a", "b", "model_a"), ("a", "b", "tie"), ("b", "a", "tie (bothbad)")], bootstrap=0)
    by_model = {r["model"]: r for r in rows}
    # a scores 1 + 0.5 + 0.5 = 2 of 3 -> strength ratio 2 -> gap 400 log10(2)
    assert by_model["a"]["bt"] - by_model["b"]["bt"] == pytest.approx(400 * math.log10(2), abs=1e-6)
    # Elo: +2 on the first vote, then ties against a slightly weaker opponent pull a back a little
    e_1 = 1 / (1 + 10 ** (-4 / 400))
    a_rating = 1002 + 4 * (0.5 - e_1)
    e_2 = 1 / (1 + 10 ** (((2000 - a_rating) - a_rating) / 400))
    a_rating += 4 * (0.5 - e_2)
    assert by_model["a"]["elo"] == pytest.approx(a_rating, abs=1e-9)
    assert by_model["a"]["bt_ci_low"] is None and by_model["a"]["bt_ci_high"] is None


def test_rate_battles_rejects_an_unknown_winner():
    with pytest.raises(ValueError, match="battle 2"):
        rate_battles([("a", "b", "model_a"), ("a", "b", "draw")], bootstrap=0)


needs_manage = pytest.mark.skipif(not (ROOT / "manage.py").is_file(), reason="manage.py not present yet")


def _manage(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if not env.get("SECRET_KEY"):
        env.setdefault("DEBUG", "1")
    return subprocess.run(
        [sys.executable, "manage.py", "rate_battles", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_manage
def test_the_rate_battles_command_prints_json_and_a_ranked_table(tmp_path):
    path = _write_jsonl(tmp_path / "battles.jsonl", BATTLES)
    result = _manage(str(path), "--bootstrap", "50", "--seed", "3", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows == rate_battles(BATTLES, bootstrap=50, seed=3)
    table = _manage(str(path), "--bootstrap", "50")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "model", "BT"]
    assert {line.split()[1] for line in lines[2:]} == {"alpha", "beta", "gamma"}


@needs_manage
def test_the_rate_battles_command_fails_with_the_line_of_a_bad_row(tmp_path):
    path = tmp_path / "battles.csv"
    path.write_text("model_a,model_b,winner\na,b,model_a\na,b,draw\n")
    result = _manage(str(path))
    assert result.returncode != 0
    assert "line 3" in result.stderr and "draw" in result.stderr
    missing = _manage(str(tmp_path / "absent.jsonl"))
    assert missing.returncode != 0
    assert "no such file" in missing.stderr


# --- every input format, read column by column ------------------------------------------------

FASTCHAT_EXTRA = {
    "question_id": "q-1",
    "judge": "arena_user_7",
    "turn": 1,
    "language": "English",
    "tstamp": 1714000000.5,
    "conv_metadata": {"sum_user_tokens": 12, "header_count_a": {"h1": 0, "h2": 1}},
    "note": 'a "quoted" value, with [brackets], {braces} and a backslash \\',
}


def _records(battles, anony=None):
    records = []
    for number, (a, b, w) in enumerate(battles):
        record = {"model_a": a, "model_b": b, "winner": w, **FASTCHAT_EXTRA}
        if anony is not None:
            record["anony"] = anony[number]
        records.append(record)
    return records


def _write(path: Path, records) -> Path:
    """Write records as CSV, JSON Lines, a pretty-printed JSON array or Parquet, by extension."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = [{k: v for k, v in r.items() if k != "conv_metadata"} for r in records]
        pq.write_table(pa.Table.from_pylist(flat), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        import csv

        names = list(records[0])
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=names)
            writer.writeheader()
            for r in records:
                writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    return path


FORMATS = ["csv", "jsonl", "json", "parquet"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_each_format_with_fastchat_extra_columns_gives_the_battles_in_file_order(tmp_path, suffix):
    path = _write(tmp_path / f"battles.{suffix}", _records(BATTLES))
    log = load_battles(path)
    assert log.rows() == BATTLES
    assert log.models == ("alpha", "beta", "gamma")
    assert rate_battles(log, bootstrap=30, seed=2) == rate_battles(BATTLES, bootstrap=30, seed=2)


def test_formats_are_recognised_by_content_when_the_name_has_no_extension(tmp_path):
    for suffix in FORMATS:
        path = _write(tmp_path / f"log.{suffix}", _records(BATTLES))
        bare = path.rename(tmp_path / f"log_{suffix}")
        assert read_battles(bare) == BATTLES, suffix


def test_a_csv_value_spanning_lines_keeps_later_line_numbers_right(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text('model_a,model_b,winner,note\na,b,tie,"two\nlines"\na,b,model_a,x\na,b,draw,y\n')
    with pytest.raises(ValueError, match=r"line 5: winner 'draw'"):
        load_battles(path)


# --- the anony filter -------------------------------------------------------------------------

ANONY = [True, False, True, True, False, True, True, False]


@pytest.mark.parametrize("suffix", FORMATS)
def test_anony_only_keeps_the_anonymous_battles_and_counts_the_rest(tmp_path, suffix):
    path = _write(tmp_path / f"battles.{suffix}", _records(BATTLES, ANONY))
    log = load_battles(path, anony_only=True)
    assert log.rows() == [battle for battle, anony in zip(BATTLES, ANONY) if anony]
    assert log.left_out == 3
    assert load_battles(path).rows() == BATTLES


@pytest.mark.parametrize("suffix", FORMATS)
def test_anony_only_on_a_log_without_anony_is_refused(tmp_path, suffix):
    path = _write(tmp_path / f"battles.{suffix}", _records(BATTLES))
    with pytest.raises(ValueError, match="lacks anony|no row has an anony field"):
        load_battles(path, anony_only=True)


# --- refused rows: where and what -------------------------------------------------------------

BAD_ROWS = [
    ({"model_a": "a", "model_b": None, "winner": "tie"}, "missing model_b", "missing field"),
    ({"model_a": "a", "model_b": " ", "winner": "tie"}, "empty model name", "empty model name"),
    ({"model_a": "x", "model_b": "x", "winner": "model_a"}, "the same model 'x'", "same model on both sides"),
    ({"model_a": "a", "model_b": "b", "winner": "draw"}, "winner 'draw' is not one of", "unknown winner"),
]
GOOD = [{"model_a": "a", "model_b": "b", "winner": "model_a"}, {"model_a": "b", "model_b": "c", "winner": "tie"}]


def _place(suffix: str, row_index: int) -> str:
    """How a file of this format names the data row at 0-based ``row_index``."""
    return {
        "csv": f"line {row_index + 2}",
        "jsonl": f"line {row_index + 1}",
        "json": f"item {row_index + 1}",
        "parquet": f"row {row_index + 1}",
    }[suffix]


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("bad, message, reason", BAD_ROWS, ids=[r[2] for r in BAD_ROWS])
def test_a_refused_row_is_named_by_its_place_and_value(tmp_path, suffix, bad, message, reason):
    if suffix == "csv" and bad["model_b"] is None:
        bad = {**bad, "model_b": ""}  # CSV has no null: an empty cell
        message = "empty model name"
    path = _write(tmp_path / f"battles.{suffix}", GOOD + [bad] + GOOD)
    with pytest.raises(ValueError) as caught:
        load_battles(path)
    assert f"{path}, {_place(suffix, 2)}: " in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize("suffix", FORMATS)
def test_skip_bad_drops_every_kind_of_refused_row_and_counts_each(tmp_path, suffix):
    bad_rows = [bad for bad, _, _ in BAD_ROWS]
    if suffix == "csv":
        bad_rows[0] = {"model_a": "a", "model_b": "", "winner": "tie"}
    path = _write(tmp_path / f"battles.{suffix}", GOOD + bad_rows + bad_rows[3:] + GOOD)
    log = load_battles(path, skip_bad=True)
    assert log.rows() == [("a", "b", "model_a"), ("b", "c", "tie")] * 2
    assert log.models == ("a", "b", "c")  # "x" appeared only in a refused row
    expected = {"empty model name": 2, "same model on both sides": 1, "unknown winner": 2}
    if suffix != "csv":
        expected = {"missing field": 1, "empty model name": 1, "same model on both sides": 1, "unknown winner": 2}
    assert log.skipped == expected


def test_a_missing_winner_and_a_non_string_model_are_refused_with_their_line(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"model_a": "a", "model_b": "b", "winner": "tie"}\n\n{"model_a": "a", "model_b": "b"}\n')
    with pytest.raises(ValueError, match=r"line 3: missing winner"):
        load_battles(path)
    good = '{"model_a": "a", "model_b": "b", "winner": "tie"}\n'
    path.write_text(good + '{"model_a": 7, "model_b": "b", "winner": "tie"}\n')
    with pytest.raises(ValueError, match=r"line 2: model_a must be a string, got 7"):
        load_battles(path)


def test_a_broken_json_array_and_a_non_object_item_are_located(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('[\n  {"model_a": "a", "model_b": "b", "winner": "tie"},\n  {"model_a": "a",\n]\n')
    with pytest.raises(ValueError, match=r"line 4: invalid JSON"):
        load_battles(path)
    path.write_text('[{"model_a": "a", "model_b": "b", "winner": "tie"}, 3]')
    with pytest.raises(ValueError, match=r"item 2: expected an object"):
        load_battles(path)


def test_a_csv_row_with_too_few_fields_and_bad_utf8_are_located(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("model_a,model_b,winner\na,b,tie\na,b\n")
    with pytest.raises(ValueError, match=r"line 3: expected 3 fields, got 2"):
        load_battles(path)
    path.write_bytes(b"model_a,model_b,winner\na,b,tie\na,\xff,tie\n")
    with pytest.raises(ValueError, match=r"line 3: not valid UTF-8"):
        load_battles(path)


def test_a_parquet_column_of_numbers_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"model_a": [1, 2], "model_b": ["a", "b"], "winner": ["tie", "tie"]}), path)
    with pytest.raises(ValueError, match=r"column model_a must hold strings, not int64"):
        load_battles(path)


@needs_manage
def test_the_command_reads_parquet_keeps_anonymous_battles_and_counts_skipped_rows(tmp_path):
    records = _records(BATTLES, ANONY) + [{"model_a": "alpha", "model_b": "beta", "winner": "draw", "anony": True}]
    path = _write(tmp_path / "battles.parquet", records)
    refused = _manage(str(path), "--bootstrap", "0", "--anony-only")
    assert refused.returncode != 0
    assert f"{path}, row 9: winner 'draw'" in refused.stderr
    result = _manage(str(path), "--bootstrap", "20", "--anony-only", "--skip-bad", "--json")
    assert result.returncode == 0, result.stderr
    kept = [battle for battle, anony in zip(BATTLES, ANONY) if anony]
    assert json.loads(result.stdout) == rate_battles(kept, bootstrap=20, seed=0)
    assert "5 battles rated" in result.stderr
    assert "3 rows left out as not anonymous" in result.stderr
    assert "1 bad row skipped (1 unknown winner)" in result.stderr
    table = _manage(str(path), "--bootstrap", "0", "--anony-only", "--skip-bad")
    assert table.returncode == 0, table.stderr
    assert "1 bad row skipped" in table.stdout.splitlines()[-1]


def test_a_json_array_keeps_names_with_escaped_quotes_backslashes_and_brackets(tmp_path):
    battles = [("a\\", 'b"x,]}', "tie"), ('b"x,]}', "[c]", "model_b"), ("[c]", "a\\", "model_a")]
    path = _write(tmp_path / "battles.json", _records(battles))
    assert read_battles(path) == battles


@needs_manage
@pytest.mark.parametrize("suffix", FORMATS)
def test_the_command_starts_without_scipy_pandas_or_the_apps(tmp_path, suffix):
    path = _write(tmp_path / f"battles.{suffix}", _records(BATTLES, ANONY))
    env = dict(os.environ)
    if not env.get("SECRET_KEY"):
        env.setdefault("DEBUG", "1")
    command = ["manage.py", "rate_battles", str(path), "--anony-only", "--bootstrap", "5"]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip() for line in listed}
    assert {"numpy", "pyarrow", "ratings.battles"} <= imported
    assert not {"scipy", "pandas", "django.contrib.admin", "rest_framework", "arena.models"} & imported
