"""Profile of the voting round trip in one process: the SQL statements of one round trip and
where the Python time goes over many (cProfile), on the database bench_voting.py leaves behind.

    python bench/profile_voting.py [--round-trips 300] [--top 25]

Needs BENCH_DATABASE_URL pointing at a database seeded by bench_voting.py (study "bench").
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--round-trips", type=int, default=300)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sql", action="store_true", help="print the statements of one round trip")
    ap.add_argument("--unprepared", action="store_true", help="run the fixed statements unprepared (to compare)")
    ap.add_argument("--generic", action="store_true", help="force generic plans for the prepared statements (to compare)")
    a = ap.parse_args()
    os.environ.update(DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/arena_bench"),
                      DEBUG="0", SECRET_KEY="bench-secret-key-not-for-production", ALLOWED_HOSTS="testserver",
                      ARENA_HTTPS="0", LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="arenasite.settings",
                      CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL") or "memory://")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token

    from django.db.models import Count

    if a.unprepared:
        from arena import rawsql

        rawsql.cursor = connection.cursor
    if a.generic:
        with connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
    tokens = iter(Token.objects.annotate(n=Count("user__annotator__votes")).order_by("n", "key").values_list("key", flat=True))
    client = task = None

    def next_annotator():
        # The annotator with the fewest votes next, when one has no task left.
        nonlocal client, task
        while task is None:
            client = Client(HTTP_AUTHORIZATION=f"Token {next(tokens)}")
            task = client.get("/api/studies/bench/next-task/").json()["task"]

    next_annotator()

    def round_trip():
        nonlocal task
        if task is None:
            next_annotator()
        answer = [x for x in task["answers"] if x != "skip"][0]
        res = client.post("/api/studies/bench/votes/", data=json.dumps({"assignment": task["assignment"], "answer": answer}),
                          content_type="application/json")
        assert res.status_code == 201, res.content
        task = res.json()["next"]["task"]

    for _ in range(20):
        round_trip()
    with CaptureQueriesContext(connection) as ctx:
        round_trip()
    print(f"one round trip: {len(ctx.captured_queries)} statements")
    if a.sql:
        for q in ctx.captured_queries:
            print(f"  {q['time']}s  {(q['sql'] or '(prepared statement)')[:300]}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def backend_cpu() -> float:
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    t0, c0, b0 = time.perf_counter(), time.process_time(), backend_cpu()
    for _ in range(a.round_trips):
        round_trip()
    wall, cpu, pg = time.perf_counter() - t0, time.process_time() - c0, backend_cpu() - b0
    print(f"{a.round_trips} round trips: {wall / a.round_trips * 1000:.2f} ms wall, {cpu / a.round_trips * 1000:.2f} ms CPU"
          f" in Python, {pg / a.round_trips * 1000:.2f} ms CPU in the PostgreSQL backend, each")
    prof = cProfile.Profile()
    t0, c0 = time.perf_counter(), time.process_time()
    prof.enable()
    for _ in range(a.round_trips):
        round_trip()
    prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{a.round_trips} round trips: {wall / a.round_trips * 1000:.2f} ms wall, {cpu / a.round_trips * 1000:.2f} ms CPU each"
          f" (under cProfile); {prof.getstats().__len__()} functions")
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    print(f"Python calls per round trip: {stats.total_calls / a.round_trips:.0f}")
    stats.sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(a.top)
    print("\n".join(out.getvalue().splitlines()[4:]))


if __name__ == "__main__":
    main()
