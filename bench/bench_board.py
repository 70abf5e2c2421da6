"""The leaderboard page, its JSON API and its 2-second poll, at 10,000 and 1,000,000 stored votes.

Every number on the board is computed by the full recompute and stored; the page, the API and
the poll only read. This benchmark shows their response time does not grow with the votes.
The baseline, measured in the same run, is `GET /healthz` (one query, no template).

    python bench/bench_board.py [--votes 10000 1000000] [--requests 30]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/arena_bench_board;
dropped and created).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seed(n_votes: int, slug: str, generators: int = 20, prompts: int = 50):
    import numpy as np
    from django.db import connection

    from arena.models import Annotator, Criterion, Generator, Image, Output, Prompt, Study
    from judging.models import GeneratorMetric, OutputScore

    study = Study.objects.create(name=f"Board bench {slug}", slug=slug, vote_kinds=["pairwise"])
    crit = Criterion.objects.get(slug="aesthetics")
    study.criteria.add(crit)
    gens = [Generator.objects.create(name=f"{slug}-gen-{i:02d}") for i in range(generators)]
    study.generators.add(*gens)
    ps = [Prompt.objects.create(text=f"{slug} p{i}", text_sha256=uuid.uuid4().hex * 2, category=f"cat{i % 4}") for i in range(prompts)]
    rng = np.random.default_rng(0)
    strength = rng.normal(0, 1, generators)
    outs = {}
    for gi, g in enumerate(gens):
        for p in ps:
            img = Image.objects.create(sha256=uuid.uuid4().hex * 2, format="png", width=8, height=8, size_bytes=1)
            o = Output.objects.create(generator=g, prompt=p, image=img)
            outs[(g.pk, p.pk)] = o.pk
            OutputScore.objects.create(output=o, scorer="clip", model_id="bench", value=float(25 + 3 * strength[gi] + rng.normal(0, 2)))
    for gi, g in enumerate(gens):
        GeneratorMetric.objects.create(study=study, generator=g, metric="clip_score", value=float(25 + 3 * strength[gi]), n=prompts)
    annotators = [Annotator.objects.create() for _ in range(200)]
    ga = rng.integers(0, generators, n_votes)
    gb = (ga + rng.integers(1, generators, n_votes)) % generators
    pr = rng.integers(0, prompts, n_votes)
    p_left = 1 / (1 + np.exp(-(strength[ga] - strength[gb])))
    u = rng.random(n_votes)
    choice = np.where(u < 0.1, "tie", np.where(u < 0.1 + 0.9 * p_left, "left", "right"))
    ann = rng.integers(0, len(annotators), n_votes)
    now = "2026-01-01 00:00:00+00"
    ids = [uuid.uuid4().hex for _ in range(n_votes)]
    with connection.cursor() as cur:
        raw = cur.connection
        with raw.cursor().copy(
            "COPY arena_assignment (id, study_id, criterion_id, annotator_id, kind, output_left_id, output_right_id,"
            " item_key, served_at, expires_at, answered_at, skipped) FROM STDIN"
        ) as cp:
            for k in range(n_votes):
                ol, orr = outs[(gens[ga[k]].pk, ps[pr[k]].pk)], outs[(gens[gb[k]].pk, ps[pr[k]].pk)]
                cp.write_row((ids[k], study.pk, crit.pk, annotators[ann[k]].pk, "pairwise", ol, orr, f"b{k}", now, now, now, False))
        with raw.cursor().copy(
            "COPY arena_vote (assignment_id, study_id, criterion_id, annotator_id, kind, output_left_id, output_right_id,"
            " generator_left_id, generator_right_id, prompt_category, choice, response_ms, is_gold, elo_applied, created_at) FROM STDIN"
        ) as cp:
            for k in range(n_votes):
                ol, orr = outs[(gens[ga[k]].pk, ps[pr[k]].pk)], outs[(gens[gb[k]].pk, ps[pr[k]].pk)]
                cp.write_row((ids[k], study.pk, crit.pk, annotators[ann[k]].pk, "pairwise", ol, orr, gens[ga[k]].pk,
                              gens[gb[k]].pk, f"cat{pr[k] % 4}", str(choice[k]), 2500, False, True, now))
        cur.execute("ANALYZE")
    return study


def timed(client, url, n, **extra) -> tuple[float, float, int]:
    times = []
    status = 0
    for _ in range(n):
        t0 = time.perf_counter()
        res = client.get(url, **extra)
        times.append((time.perf_counter() - t0) * 1000)
        status = res.status_code
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--requests", type=int, default=30)
    a = ap.parse_args()
    db_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/arena_bench_board")
    import psycopg

    name = urlparse(db_url).path.lstrip("/")
    try:
        with psycopg.connect(db_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"bench_board: PostgreSQL not reachable at {db_url} ({exc}); skipped")
        return
    os.environ.update(DATABASE_URL=db_url, DEBUG="1", DJANGO_SETTINGS_MODULE="arenasite.settings", LOG_LEVEL="WARNING",
                      ARENA_BOOTSTRAP_ROUNDS="1000", CELERY_TASK_ALWAYS_EAGER="0")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from ratings.selectors import board_version_get
    from ratings.services import study_recompute

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench-researcher", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    print(f"board response times, median and p95 of {a.requests} requests each (in process, PostgreSQL)")
    for n in a.votes:
        slug = f"b{n}"
        t0 = time.perf_counter()
        study = seed(n, slug)
        seeded = time.perf_counter() - t0
        t0 = time.perf_counter()
        study_recompute(study_id=study.pk)
        recompute = time.perf_counter() - t0
        version = board_version_get(study=study, criterion=study.criteria.first())
        base = timed(client, "/healthz", a.requests)
        page = timed(client, f"/leaderboard/{slug}/", a.requests)
        api = timed(client, f"/api/studies/{slug}/leaderboard/", a.requests)
        poll = timed(client, f"/leaderboard/{slug}/?since={version}", a.requests, HTTP_HX_REQUEST="true")
        print(f"{n:>9,} votes (seeded in {seeded:.0f} s, recompute {recompute:.1f} s)")
        print(f"    baseline GET /healthz      p50 {base[0]:7.1f} ms  p95 {base[1]:7.1f} ms")
        print(f"    board page                 p50 {page[0]:7.1f} ms  p95 {page[1]:7.1f} ms  (status {page[2]})")
        print(f"    board JSON API             p50 {api[0]:7.1f} ms  p95 {api[1]:7.1f} ms  (status {api[2]})")
        print(f"    2 s poll, nothing new      p50 {poll[0]:7.1f} ms  p95 {poll[1]:7.1f} ms  (status {poll[2]})")


if __name__ == "__main__":
    main()
