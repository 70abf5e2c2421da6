"""Full ratings recompute of a study with 1,000,000 pairwise votes stored in PostgreSQL.

Ours aggregates per-pair counts in SQL and fits Bradley–Terry with a 1,000-round bootstrap,
plus every statistic of the board. The baseline, measured in the same run, reads every vote
row into Python first (what a naive recompute does) and then runs the same fit.

    python bench/bench_recompute.py [--votes 1000000] [--generators 50]

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/arena_bench_recompute;
dropped and created).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--generators", type=int, default=50)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="print where the full recompute spends its time")
    a = ap.parse_args()
    db_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/arena_bench_recompute")
    import psycopg

    name = urlparse(db_url).path.lstrip("/")
    try:
        with psycopg.connect(db_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"bench_recompute: PostgreSQL not reachable at {db_url} ({exc}); skipped")
        return
    os.environ.update(DATABASE_URL=db_url, DEBUG="1", DJANGO_SETTINGS_MODULE="arenasite.settings", LOG_LEVEL="WARNING",
                      ARENA_BOOTSTRAP_ROUNDS="1000")
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command
    from django.db import connection

    from arena.models import Annotator, Criterion, Generator, Image, Output, Prompt, Study
    from ratings import bradley_terry as bt
    from ratings.services import study_recompute

    call_command("migrate", verbosity=0)
    t0 = time.perf_counter()
    study = Study.objects.create(name="Recompute bench", slug="rb", vote_kinds=["pairwise"])
    crit = Criterion.objects.get(slug="aesthetics")
    study.criteria.add(crit)
    gens = [Generator.objects.create(name=f"gen-{i:02d}") for i in range(a.generators)]
    study.generators.add(*gens)
    prompts = [Prompt.objects.create(text=f"p{i}", text_sha256=f"{i:064x}", category=f"cat{i % 4}") for i in range(a.prompts)]
    outs = {}
    for g in gens:
        for p in prompts:
            sha = uuid.uuid4().hex * 2
            img = Image.objects.create(sha256=sha, format="png", width=8, height=8, size_bytes=1)
            outs[(g.pk, p.pk)] = Output.objects.create(generator=g, prompt=p, image=img).pk
    annotators = [Annotator.objects.create() for _ in range(200)]
    rng = np.random.default_rng(0)
    strength = rng.normal(0, 1, a.generators)
    n = a.votes
    ga = rng.integers(0, a.generators, n)
    gb = (ga + rng.integers(1, a.generators, n)) % a.generators
    pr = rng.integers(0, a.prompts, n)
    p_left = 1 / (1 + np.exp(-(strength[ga] - strength[gb])))
    u = rng.random(n)
    choice = np.where(u < 0.1, "tie", np.where(u < 0.1 + 0.9 * p_left, "left", "right"))
    ann = rng.integers(0, len(annotators), n)
    now = "2026-01-01 00:00:00+00"
    ids = [uuid.uuid4().hex for _ in range(n)]
    with connection.cursor() as cur:
        raw = cur.connection
        with raw.cursor().copy(
            "COPY arena_assignment (id, study_id, criterion_id, annotator_id, kind, output_left_id, output_right_id,"
            " item_key, served_at, expires_at, answered_at, skipped) FROM STDIN"
        ) as cp:
            for k in range(n):
                ol, orr = outs[(gens[ga[k]].pk, prompts[pr[k]].pk)], outs[(gens[gb[k]].pk, prompts[pr[k]].pk)]
                cp.write_row((ids[k], study.pk, crit.pk, annotators[ann[k]].pk, "pairwise", ol, orr, f"b{k}", now, now, now, False))
        with raw.cursor().copy(
            "COPY arena_vote (assignment_id, study_id, criterion_id, annotator_id, kind, output_left_id, output_right_id,"
            " generator_left_id, generator_right_id, prompt_category, choice, response_ms, is_gold, elo_applied, created_at) FROM STDIN"
        ) as cp:
            for k in range(n):
                ol, orr = outs[(gens[ga[k]].pk, prompts[pr[k]].pk)], outs[(gens[gb[k]].pk, prompts[pr[k]].pk)]
                cp.write_row((ids[k], study.pk, crit.pk, annotators[ann[k]].pk, "pairwise", ol, orr, gens[ga[k]].pk,
                              gens[gb[k]].pk, f"cat{pr[k] % 4}", str(choice[k]), 1000, False, True, now))
        cur.execute("ANALYZE")
    print(f"seeded {n:,} votes among {a.generators} generators in {time.perf_counter() - t0:.0f} s")

    from django.db.models import Count

    from arena.models import Vote

    index = {g.pk: i for i, g in enumerate(gens)}
    base = Vote.objects.filter(study=study, criterion=crit, annotator__excluded=False)

    # Ours, overall board: per-pair counts aggregated in SQL, then BT + 1,000-round bootstrap.
    t0 = time.perf_counter()
    rows = list(base.values_list("generator_left_id", "generator_right_id", "choice").annotate(n=Count("id")).order_by())
    ia = np.array([index[r[0]] for r in rows])
    ib = np.array([index[r[1]] for r in rows])
    cnt = np.array([r[3] for r in rows], dtype=float)
    ch = np.array([r[2] for r in rows])
    wa, wb, tt = cnt * (ch == "left"), cnt * (ch == "right"), cnt * np.isin(ch, ["tie", "bothbad"])
    agg = bt.aggregate_pairs(a.generators, ia, ib, wa, wb, tt)
    bt.fit_bt(a.generators, *agg)
    bt.bootstrap_bt(a.generators, *agg, rounds=1000, seed=0)
    ours_board = time.perf_counter() - t0

    # Baseline, same board: every vote row into Python first, then the same fit and bootstrap.
    t0 = time.perf_counter()
    rows = list(base.values_list("generator_left_id", "generator_right_id", "choice").iterator(chunk_size=20000))
    ia = np.fromiter((index[r[0]] for r in rows), int, len(rows))
    ib = np.fromiter((index[r[1]] for r in rows), int, len(rows))
    ch = np.array([r[2] for r in rows])
    wa, wb, tt = (ch == "left").astype(float), (ch == "right").astype(float), np.isin(ch, ["tie", "bothbad"]).astype(float)
    agg = bt.aggregate_pairs(a.generators, ia, ib, wa, wb, tt)
    bt.fit_bt(a.generators, *agg)
    bt.bootstrap_bt(a.generators, *agg, rounds=1000, seed=0)
    naive = time.perf_counter() - t0

    # The whole recompute the worker runs, three times (the first also pays for what a worker
    # does once, such as lazy imports); the median is the figure.
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        study_recompute(study_id=study.pk)
        runs.append(time.perf_counter() - t0)
    full = sorted(runs)[1]
    if a.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        study_recompute(study_id=study.pk)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(r"ratings/|judging/|arena/", 30)

    print(f"ratings recompute, {n:,} pairwise votes in PostgreSQL, {a.generators} generators, 1,000 bootstrap rounds")
    print(f"  overall board, counts aggregated in SQL (ours)      {ours_board:6.2f} s")
    print(f"  overall board, every vote row into Python (baseline) {naive:6.2f} s   ratio baseline/ours {naive / ours_board:.1f}x")
    print(f"  full recompute as the worker runs it                 {full:6.2f} s   (target < 2 s): overall board + 4 category")
    print("    boards (200 rounds each), rating and good/bad summaries, matrices, position bias, agreement")
    print(f"    median of 3 runs: {', '.join(f'{t:.2f}' for t in runs)} s")


if __name__ == "__main__":
    main()
