"""Feeding the rating engine from the database and storing what it computes.

- Online Elo: every committed pairwise vote is applied exactly once, in vote order, under a
  row lock on the study's EloState (a retry or a second worker finds nothing left to apply).
- Full recompute (Bradley–Terry + bootstrap, Likert and binary intervals, matrices, position
  bias, agreement): debounced after votes, at most one running per study, from per-pair
  counts aggregated in SQL.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from arena import derived, hooks, rawsql
from arena.models import Annotator, Generator, Output, Study, Vote, VoteKind
from arena.selectors import counted_votes, withdrawn_output_ids

from . import bradley_terry as bt
from . import board as board_rules
from . import stats
from .elo import elo_step
from .quality import AnnotatorCounts, ItemCounts, annotator_quality_store, annotator_reads, item_counts, row_codes
from .sampling import bt_standard_errors
from .models import EloState, LeaderboardResult, RecomputeState

logger = logging.getLogger(__name__)

ELO_BATCH = 20_000
ANNOTATOR_BIAS_ROWS = 50


# --------------------------------------------------------------------------- scheduling

def ratings_vote_committed(*, study_id: int, criterion_id: int) -> None:
    """Called after a vote commits: ask for the Elo update and the debounced recompute.

    Never raises: the vote is committed whatever happens here, and what could not be queued
    stays recorded as requested for the next vote, page view or sweep.
    """
    try:
        elo, recompute = _requests_outstanding(study_id=study_id, criterion_id=criterion_id)
        now = timezone.now()
        if elo is None:
            elo_request(study_id=study_id, criterion_id=criterion_id)
        else:
            from .tasks import elo_apply_task

            derived.dispatch(EloState, pk=elo[0], requested_at=elo[1], queued_at=elo[2], task=elo_apply_task,
                             args=(study_id, criterion_id), countdown=settings.ARENA_ELO_DEBOUNCE_SECONDS, now=now)
        if recompute is None:
            recompute_request(study_id=study_id)
        else:
            pk, requested_at, queued_at, running, heartbeat_at = recompute
            _recompute_dispatch(pk=pk, study_id=study_id, requested_at=requested_at, queued_at=queued_at, now=now,
                                running=running, heartbeat_at=heartbeat_at)
    except Exception:
        logger.exception("could not request ratings for study %s, criterion %s", study_id, criterion_id)


def _requests_outstanding(*, study_id: int, criterion_id: int) -> tuple[tuple | None, tuple | None]:
    """The study's Elo and recompute rows when both already record an outstanding request (the
    usual case under load, when a vote needs no write), read in one statement; None for a row
    that is missing or not requested, which then takes the full path."""
    sql = (
        "SELECT e.id, e.requested_at, e.queued_at, r.id, r.requested_at, r.queued_at, r.running, r.heartbeat_at"
        " FROM (SELECT 1 AS one) x"
        f" LEFT JOIN {EloState._meta.db_table} e ON e.study_id = %s AND e.criterion_id = %s"
        f" LEFT JOIN {RecomputeState._meta.db_table} r ON r.study_id = %s"
    )
    with rawsql.cursor() as cursor:
        cursor.execute(sql, [study_id, criterion_id, study_id])
        row = cursor.fetchone()
    convert = rawsql.value_reader(EloState, "requested_at")
    elo = (row[0], convert(row[1]), convert(row[2])) if row[0] is not None and row[1] is not None else None
    recompute = ((row[3], convert(row[4]), convert(row[5]), bool(row[6]), convert(row[7]))
                 if row[3] is not None and row[4] is not None else None)
    return elo, recompute


def _mark_requested(model, now, extra: tuple[str, ...] = (), **lookup) -> tuple:
    """Record that the row's work was asked for (keeping the oldest outstanding request).
    Returns (pk, requested_at, queued_at, *extra fields).

    A plain read comes first: while a request is outstanding (the usual case under load) a vote
    costs no write and never waits on a lock held by the running task.
    """
    fields = ("pk", "requested_at", "queued_at", *extra)
    row = model.objects.filter(**lookup).values_list(*fields).first()
    if row is None:
        obj, _ = model.objects.get_or_create(**lookup, defaults={"requested_at": now})
        row = tuple(getattr(obj, f) for f in fields)
    if row[1] is None:
        model.objects.filter(pk=row[0], requested_at__isnull=True).update(requested_at=now)
        row = model.objects.filter(pk=row[0]).values_list(*fields).first()
    return row


def elo_request(*, study_id: int, criterion_id: int) -> None:
    from .tasks import elo_apply_task

    now = timezone.now()
    pk, requested_at, queued_at = _mark_requested(EloState, now, study_id=study_id, criterion_id=criterion_id)
    derived.dispatch(
        EloState, pk=pk, requested_at=requested_at, queued_at=queued_at,
        task=elo_apply_task, args=(study_id, criterion_id), countdown=settings.ARENA_ELO_DEBOUNCE_SECONDS, now=now,
    )


def recompute_request(*, study_id: int, now_please: bool = False) -> None:
    """Ask for a full recompute, debounced; `now_please` ("Recompute now") always queues a run."""
    now = timezone.now()
    pk, requested_at, queued_at, running, heartbeat_at = _mark_requested(
        RecomputeState, now, ("running", "heartbeat_at"), study_id=study_id
    )
    if now_please:
        RecomputeState.objects.filter(pk=pk).update(queued_at=now)
        derived.publish_backoff_clear()
        _recompute_publish(study_id, countdown=0)
        return
    _recompute_dispatch(pk=pk, study_id=study_id, requested_at=requested_at, queued_at=queued_at, now=now,
                        running=running, heartbeat_at=heartbeat_at)


def _recompute_publish(study_id: int, countdown: float) -> bool:
    from .tasks import recompute_task

    return derived.publish(recompute_task, study_id, countdown=countdown)


def _recompute_dispatch(*, pk, study_id, requested_at, queued_at, now, running=None, heartbeat_at=None) -> bool:
    from .tasks import recompute_task

    if running is None:
        running, heartbeat_at = RecomputeState.objects.filter(pk=pk).values_list("running", "heartbeat_at").first()
    if running and not derived.heartbeat_stale(heartbeat_at, now=now):
        return False  # the live run asks for the next one when it finishes
    return derived.dispatch(
        RecomputeState, pk=pk, requested_at=requested_at, queued_at=queued_at, task=recompute_task,
        args=(study_id,), countdown=settings.ARENA_RECOMPUTE_DEBOUNCE_SECONDS, now=now,
    )


def ratings_catch_up(*, study_id: int | None = None) -> int:
    """Queue whatever rating work is owed and has no message on its way: votes not yet in the
    online Elo, requests whose message was lost, runs whose worker died. Returns how many
    messages went out. Called by the periodic sweep (all studies) and by page views (one)."""
    from .tasks import elo_apply_task

    now = timezone.now()
    sent = 0
    owed = Vote.objects.filter(elo_applied=False)
    if study_id is not None:
        owed = owed.filter(study_id=study_id)
    for sid, cid in owed.values_list("study_id", "criterion_id").distinct().order_by():
        _mark_requested(EloState, now, study_id=sid, criterion_id=cid)
    # A run that died took its request with it (a claim clears the request it serves): ask again.
    dead = RecomputeState.objects.filter(running=True, requested_at__isnull=True).filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - derived.stale_after())
    )
    (dead.filter(study_id=study_id) if study_id is not None else dead).update(requested_at=now)
    elo = EloState.objects.filter(requested_at__isnull=False)
    recompute = RecomputeState.objects.filter(requested_at__isnull=False)
    if study_id is not None:
        elo, recompute = elo.filter(study_id=study_id), recompute.filter(study_id=study_id)
    for pk, sid, cid, requested_at, queued_at in elo.values_list("pk", "study_id", "criterion_id", "requested_at", "queued_at"):
        sent += derived.dispatch(
            EloState, pk=pk, requested_at=requested_at, queued_at=queued_at, task=elo_apply_task, args=(sid, cid), now=now
        )
    for pk, sid, requested_at, queued_at, running, heartbeat_at in recompute.values_list(
        "pk", "study_id", "requested_at", "queued_at", "running", "heartbeat_at"
    ):
        sent += _recompute_dispatch(
            pk=pk, study_id=sid, requested_at=requested_at, queued_at=queued_at, now=now,
            running=running, heartbeat_at=heartbeat_at,
        )
    return sent


def ratings_rerun(*, study_id: int) -> None:
    """Staff "re-run": queue the study's online Elo (if votes are owed) and a full recompute now."""
    EloState.objects.filter(study_id=study_id).update(queued_at=None)
    derived.publish_backoff_clear()
    ratings_catch_up(study_id=study_id)
    recompute_request(study_id=study_id, now_please=True)


# --------------------------------------------------------------------------- online Elo


def _score_left(choice: str, both_bad_as_tie: bool) -> float | None:
    if choice == Vote.Choice.LEFT:
        return 1.0
    if choice == Vote.Choice.RIGHT:
        return 0.0
    if choice == Vote.Choice.TIE or (choice == Vote.Choice.BOTH_BAD and both_bad_as_tie):
        return 0.5
    return None


def elo_apply(*, study_id: int, criterion_id: int) -> int:
    """Apply every committed, not yet applied vote, batch by batch. Returns how many.

    Each batch takes the unapplied votes in id order under a row lock on the EloState and
    stores its number on them, so the order votes entered the online Elo is (elo_batch, id):
    a vote that commits after a vote with a higher id was applied enters with the next batch.
    A retry, a duplicate message or a second worker finds nothing left to apply.
    """
    state, _ = EloState.objects.get_or_create(study_id=study_id, criterion_id=criterion_id)
    # This run serves every request made so far; a vote committing from now on asks again.
    EloState.objects.filter(pk=state.pk).update(requested_at=None, queued_at=None)
    both_bad_as_tie = Study.objects.filter(pk=study_id).values_list("both_bad_as_tie", flat=True).first()
    if both_bad_as_tie is None:
        return 0
    withdrawn = withdrawn_output_ids(study_id)
    applied = 0
    while True:
        with transaction.atomic():
            _elo_lock(state.pk)
            state = EloState.objects.get(pk=state.pk)
            rows = list(
                Vote.objects.filter(study_id=study_id, criterion_id=criterion_id, elo_applied=False)
                .order_by("id")
                .values_list("id", "kind", "is_gold", "annotator__excluded", "generator_left_id", "generator_right_id", "choice",
                             "output_left_id", "output_right_id")[:ELO_BATCH]
            )
            if rows:
                ratings = {int(k): list(v) for k, v in state.ratings.items()}
                for _vid, kind, is_gold, excluded, gl, gr, choice, ol, orr in rows:
                    if kind != VoteKind.PAIRWISE or is_gold or excluded or ol in withdrawn or orr in withdrawn:
                        continue
                    s = _score_left(choice, both_bad_as_tie)
                    if s is None:
                        continue
                    ra, na = ratings.get(gl, [1000.0, 0])
                    rb, nb = ratings.get(gr, [1000.0, 0])
                    ra, rb = elo_step(ra, rb, s)
                    ratings[gl] = [ra, na + 1]
                    ratings[gr] = [rb, nb + 1]
                    state.votes_applied += 1
                ids = [r[0] for r in rows]
                state.batches += 1
                Vote.objects.filter(id__in=ids).update(elo_applied=True, elo_batch=state.batches)
                state.ratings = {str(k): v for k, v in ratings.items()}
                state.last_vote_id = max(state.last_vote_id, ids[-1])
                applied += len(rows)
                # In the batch's transaction: the board is owed these votes even if this process
                # dies before it queues the recompute (and even if the votes' own hook never ran).
                _mark_requested(RecomputeState, timezone.now(), study_id=study_id)
            # The row itself is written last, so a vote asking for the next run (a write to the same
            # row) waits for this commit at most, never for the whole batch.
            EloState.objects.filter(pk=state.pk).update(
                ratings=state.ratings, votes_applied=state.votes_applied, last_vote_id=state.last_vote_id,
                batches=state.batches, finished_at=timezone.now(), updated_at=timezone.now())
        if len(rows) < ELO_BATCH:
            break
    if applied:
        recompute_request(study_id=study_id)
    return applied


ELO_LOCK_CLASS = 0x454C4F  # "ELO": the first key of the advisory locks that serialize Elo batches


def _elo_lock(state_pk: int) -> None:
    """Hold, until the transaction ends, the lock that lets one Elo batch (or reset) at a time
    change a criterion's Elo. An advisory lock rather than the state row's own lock, so that votes
    recording a request on that row do not wait for a batch. SQLite runs one writer at a time anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ELO_LOCK_CLASS, state_pk])


def elo_reset(*, study_id: int) -> list[int]:
    """Forget the online Elo of a study so it is replayed from the first vote (after annotators
    were excluded or included again). Run inside the caller's transaction; returns criteria ids."""
    criteria = []
    for state in EloState.objects.filter(study_id=study_id).order_by("pk"):
        _elo_lock(state.pk)
        state.refresh_from_db()
        Vote.objects.filter(study_id=study_id, criterion_id=state.criterion_id, elo_applied=True).update(elo_applied=False, elo_batch=None)
        state.ratings, state.votes_applied, state.last_vote_id, state.batches = {}, 0, 0, 0
        state.save(update_fields=["ratings", "votes_applied", "last_vote_id", "batches", "updated_at"])
        criteria.append(state.criterion_id)
    return criteria


def elo_rebuild(*, study_id: int) -> None:
    """Replay Elo from the first vote, now (after annotators or outputs were excluded or included again)."""
    with transaction.atomic():
        criteria = elo_reset(study_id=study_id)
    for criterion_id in criteria:
        elo_apply(study_id=study_id, criterion_id=criterion_id)


def votes_recounted(*, study_ids: list[int]) -> None:
    """Hook: inside the transaction that excluded an annotator or withdrew an output. The Elo of
    each study is reset there and asked for again after the commit, with the full recompute, so a
    lost message cannot leave the left-out votes counted."""
    for study_id in study_ids:
        criteria = elo_reset(study_id=study_id)
        transaction.on_commit(lambda sid=study_id, cs=tuple(criteria): _after_exclusion(sid, cs))


def _after_exclusion(study_id: int, criteria: tuple[int, ...]) -> None:
    for criterion_id in criteria:
        elo_request(study_id=study_id, criterion_id=criterion_id)
    recompute_request(study_id=study_id, now_please=True)


# --------------------------------------------------------------------------- full recompute


def recompute_claim(*, study_id: int) -> datetime | None:
    """Claim the study's recompute: free, or held by a run whose heartbeat stopped (its worker
    died). Returns the claim's start time (the token its run finishes with), or None."""
    now = timezone.now()
    RecomputeState.objects.get_or_create(study_id=study_id)
    free = Q(running=False) | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - derived.stale_after())
    claimed = RecomputeState.objects.filter(free, study_id=study_id).update(
        running=True, requested_at=None, queued_at=None, started_at=now, heartbeat_at=now
    )
    return now if claimed else None


RECOMPUTE_SESSION = {
    # Room for the aggregations over every vote to hash in memory (the default 4 MB spills 1M
    # votes' item counts to disk).
    "work_mem": "64MB",
    # No JIT: the per-annotator sample's estimate (a walk per annotator) crosses jit_above_cost,
    # and compiling took 145 ms of the query's 178 ms on 1M votes.
    "jit": "off",
    # No parallel workers: the recompute keeps two connections busy already, and workers of the
    # annotators' aggregation took cores from the item counts' (0.87 s alone, 1.04 s beside them).
    "max_parallel_workers_per_gather": "0",
}


@contextmanager
def _recompute_session():
    """The recompute's PostgreSQL settings (RECOMPUTE_SESSION) on this thread's connection; the
    connection's defaults come back after."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        for name, value in RECOMPUTE_SESSION.items():
            cursor.execute(f"SET {name} = '{value}'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for name in RECOMPUTE_SESSION:
                cursor.execute(f"RESET {name}")


def study_recompute(*, study_id: int) -> bool:
    """Recompute every stored leaderboard of a study. False if a live run holds the claim."""
    token = recompute_claim(study_id=study_id)
    if token is None:
        # This message is spent; the live run queues the next one if votes came in meanwhile.
        RecomputeState.objects.filter(study_id=study_id).update(queued_at=None)
        return False
    state = RecomputeState.objects.get(study_id=study_id)
    t0 = time.perf_counter()
    error = ""
    try:
        with derived.keepalive(RecomputeState, pk=state.pk, running=True, started_at=token), _recompute_session():
            study = Study.objects.get(pk=study_id)
            # What the scoring app adds to each board (metric agreement, safety, question checks).
            additions = hooks.call("board_additions", study=study, default=None)
            # One aggregation over every vote each, shared by the boards and the annotator review:
            # the item counts here, the annotators' on a second connection meanwhile where one can be used.
            aside = _aside(annotator_reads, study=study)
            items = item_counts(study=study)
            counts, answers = aside.result()
            # The annotator review is stored meanwhile, on the second connection.
            review = _aside(annotator_quality_store, study=study, items=items, counts=counts, answers=answers)
            try:
                for criterion in study.criteria.all():
                    _recompute_criterion(study, criterion, additions=additions, items=items, counts=counts)
            finally:
                wait([review])  # a failed board still waits for the review it started
            review.result()
            hooks.call("study_recomputed", study=study)  # e.g. the judges sections follow the new fit
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        logger.exception("recompute of study %s failed", study_id)
        raise
    finally:
        RecomputeState.objects.filter(pk=state.pk, started_at=token).update(
            running=False,
            finished_at=timezone.now(),
            last_duration_ms=int((time.perf_counter() - t0) * 1000),
            last_error=error,
        )
        if not error:
            again = RecomputeState.objects.filter(pk=state.pk).values_list("requested_at", "queued_at").first()
            if again and again[0] is not None:
                _recompute_dispatch(pk=state.pk, study_id=study_id, requested_at=again[0], queued_at=again[1], now=timezone.now())
    return True


_clean = board_rules.json_safe

RECOMPUTE_THREADS = 2
"""Boards a recompute fits at once (numpy releases the GIL while it draws and solves)."""


def _aside(work, /, **kwargs) -> Future:
    """`work(**kwargs)` on a second database connection, in a thread, so that it runs beside this
    connection's work; here and now where another connection would not do: on SQLite, or inside
    a transaction (another connection would not see its writes, nor this one the other's)."""
    future: Future = Future()
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        try:
            future.set_result(work(**kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def run() -> None:
        try:
            with _recompute_session():
                future.set_result(work(**kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            connection.close()  # this thread's own

    threading.Thread(target=run, name="recompute-read", daemon=True).start()
    return future


def _recompute_criterion(study: Study, criterion, *, items: ItemCounts, counts: AnnotatorCounts, additions=None) -> None:
    base = counted_votes(Vote.objects.filter(study=study, criterion=criterion, is_gold=False, annotator__excluded=False), study=study)
    generators = list(Generator.objects.filter(studies=study).order_by("name").values_list("id", "name"))
    n = len(generators)
    by_prompt = study.bootstrap_unit == Study.BootstrapUnit.PROMPTS
    pairs, likert, binary = _board_counts(items, criterion.pk, [gid for gid, _ in generators], by_prompt=by_prompt)

    def fit(cat: str) -> dict:
        # Category cuts use fewer bootstrap rounds so a study with many categories stays quick.
        rounds = settings.ARENA_BOOTSTRAP_ROUNDS if cat == "" else max(100, settings.ARENA_BOOTSTRAP_ROUNDS // 5)
        return _board(
            generators, n, pairs.get(cat, PairCounts.empty()), likert.get(cat, {}), binary.get(cat, {}), study.both_bad_as_tie,
            rounds, min_votes=study.min_votes_per_generator, by_prompt=by_prompt,
        )

    categories = sorted({""} | set(pairs) | set(likert) | set(binary))
    with ThreadPoolExecutor(RECOMPUTE_THREADS, thread_name_prefix="recompute-board") as pool:
        boards = pool.map(fit, categories)  # the overall board, the longest, first
        bias_rows = _position_bias_rows(counts, criterion.pk)
        agreement = _agreement(items, criterion.pk)
        boards = list(boards)
    now = timezone.now()
    keep = []
    for cat, data in zip(categories, boards):
        if cat == "":
            data["position_bias"] = _position_bias(bias_rows)
            data["agreement"] = agreement
            needed = _votes_needed(data)
            data["votes_needed"] = needed["value"]
            data["votes_needed_status"] = needed["status"]
        stored = _clean(data)
        if cat == "" and additions is not None:
            stored.update(_clean(additions(criterion=criterion, board=stored, base=base)))
        LeaderboardResult.objects.update_or_create(
            study=study, criterion=criterion, category=cat,
            defaults={"computed_at": now, "votes_total": data["votes_total"], "data": stored},
        )
        keep.append(cat)
    LeaderboardResult.objects.filter(study=study, criterion=criterion).exclude(category__in=keep).delete()


@dataclass(frozen=True)
class PairCounts:
    """A board's pairwise votes, one row per (cluster, left generator, right generator): how many
    the left one won, the right one won, were ties and were both bad. The cluster is the prompt
    of the left output when the bootstrap resamples prompts, else 0."""

    cluster: np.ndarray
    a: np.ndarray
    b: np.ndarray
    left: np.ndarray
    right: np.ndarray
    tie: np.ndarray
    bothbad: np.ndarray

    @classmethod
    def empty(cls) -> PairCounts:
        none = np.zeros(0, dtype=np.int64)
        return cls(none, none, none, none, none, none, none)


PAIRWISE_SLOTS = ("left", "right", "tie", "bothbad")


def _sum_by(keys: list[np.ndarray], weights: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Rows merged by equal keys: (the distinct keys, column by column; each weight summed over
    their rows). Integer keys and weights."""
    if not keys[0].size:
        return [k[:0] for k in keys], [w[:0] for w in weights]
    code = row_codes(keys)
    distinct, first = np.unique(code, return_index=True)
    return ([k[first] for k in keys],
            [np.bincount(code, weights=w, minlength=distinct.size).astype(np.int64) for w in weights])


def _board_counts(items: ItemCounts, criterion_id: int, generator_ids: list[int], *, by_prompt: bool):
    """A criterion's counts per board from the study's item counts (the votes of annotators not
    excluded): pairwise votes (PairCounts) between the study's generators, ratings per generator
    (counts of 1-5) and good/bad answers per generator ([good, all]), each keyed by board:
    "" overall, else the prompt category the votes were cast under."""
    counted = items.counted
    mine = (items.criterion == criterion_id) & (counted > 0)
    categories = np.unique(items.prompt_category[mine])
    boards = [("", np.ones(items.n.size, dtype=bool))] + [(c, items.prompt_category == c) for c in categories.tolist() if c]

    pairs: dict[str, PairCounts] = {}
    study_ids = np.asarray(generator_ids, dtype=np.int64)
    order = np.argsort(study_ids)

    def study_index(gid: np.ndarray) -> np.ndarray:
        """Each generator's position among the study's (-1: not in the study)."""
        if not study_ids.size:
            return np.full(gid.size, -1)
        pos = np.minimum(np.searchsorted(study_ids[order], gid), study_ids.size - 1)
        return np.where(study_ids[order][pos] == gid, order[pos], -1)

    pairwise = mine & (items.kind == VoteKind.PAIRWISE)
    a, b = study_index(items.generator_left[pairwise]), study_index(items.generator_right[pairwise])
    known = (a >= 0) & (b >= 0)
    rows = np.flatnonzero(pairwise)[known]
    a, b = a[known], b[known]
    cluster = _prompts_of(items.output_left[rows]) if by_prompt else np.zeros(rows.size, dtype=np.int64)
    slot_weights = [counted[rows] * (items.choice[rows] == slot) for slot in PAIRWISE_SLOTS]
    for cat, in_board in boards:
        keep = in_board[rows]
        if not keep.any():
            continue
        (cl, ka, kb), sums = _sum_by([cluster[keep], a[keep], b[keep]], [w[keep] for w in slot_weights])
        pairs[cat] = PairCounts(cl, ka, kb, *sums)

    likert: dict[str, dict[int, np.ndarray]] = {}
    binary: dict[str, dict[int, list[int]]] = {}
    for kind in (VoteKind.LIKERT, VoteKind.BINARY):
        rows = np.flatnonzero(mine & (items.kind == kind))
        for cat, in_board in boards:
            keep = rows[in_board[rows]]
            if not keep.size:
                continue
            (gid, score), (cnt,) = _sum_by([items.generator_left[keep], items.score[keep]], [counted[keep]])
            per: dict = {}
            for g, sc, c in zip(gid.tolist(), score.tolist(), cnt.tolist()):
                if kind == VoteKind.LIKERT:
                    per.setdefault(g, np.zeros(5))[sc - 1] += c
                else:
                    good_all = per.setdefault(g, [0, 0])
                    good_all[0] += c * sc
                    good_all[1] += c
            (likert if kind == VoteKind.LIKERT else binary)[cat] = per
    return pairs, likert, binary


def _prompts_of(output_ids: np.ndarray) -> np.ndarray:
    """The prompt of each output (ids in, prompt ids out, as arrays)."""
    distinct, position = np.unique(output_ids, return_inverse=True)
    prompt_of = dict(Output.objects.filter(pk__in=distinct.tolist()).values_list("id", "prompt_id"))
    return np.array([prompt_of[o] for o in distinct.tolist()], dtype=np.int64)[position.ravel()]


def _board(generators, n, pair_counts: PairCounts, likert_counts, binary_counts, both_bad_as_tie, rounds: int,
           *, min_votes: int = 1, by_prompt: bool = False) -> dict:
    clusters, idx_a, idx_b = pair_counts.cluster, pair_counts.a.astype(np.int64), pair_counts.b.astype(np.int64)
    wa, wb = pair_counts.left.astype(float), pair_counts.right.astype(float)
    ties = (pair_counts.tie + (pair_counts.bothbad if both_bad_as_tie else 0)).astype(float)
    pairwise_total = int(wa.sum() + wb.sum() + ties.sum()) if len(wa) else 0
    rows = []
    ratings = np.full(n, np.nan)
    low = high = np.full(n, np.nan)
    ranks = np.zeros(n, dtype=int)
    counts = np.zeros((n, n))
    win_rate = np.full((n, n), np.nan)
    stderr = np.full(n, np.nan)
    if pairwise_total:
        pairs_u = bt.aggregate_pairs(n, idx_a, idx_b, wa, wb, ties)
        ratings = bt.fit_bt(n, *pairs_u)
        if by_prompt:
            samples = bt.bootstrap_bt_clusters(n, clusters, idx_a, idx_b, wa, wb, ties, rounds=rounds, seed=0)
        else:
            samples = bt.bootstrap_bt(n, *pairs_u, rounds=rounds, seed=0)
        low, high = bt.intervals(samples)
        voted = ~np.isnan(ratings)
        win_rate, counts = stats.win_rate_matrix(n, idx_a, idx_b, wa, wb, ties)
        if voted.any():
            filled = np.where(voted, ratings, np.nanmean(ratings))
            stderr = bt_standard_errors(n, counts, filled)
            stderr[~voted] = np.nan
    predicted = bt.win_probability(np.nan_to_num(ratings, nan=1000.0))
    wins = np.bincount(idx_a, weights=wa, minlength=n) + np.bincount(idx_b, weights=wb, minlength=n)
    losses = np.bincount(idx_a, weights=wb, minlength=n) + np.bincount(idx_b, weights=wa, minlength=n)
    tie_n = np.bincount(idx_a, weights=ties, minlength=n) + np.bincount(idx_b, weights=ties, minlength=n)
    votes_per = wins + losses + tie_n
    is_provisional = board_rules.provisional(votes_per, min_votes)
    if pairwise_total:
        ranks = board_rules.ranks_of_settled(low, high, ~is_provisional & ~np.isnan(ratings))
    for i, (gid, name) in enumerate(generators):
        lk = likert_counts.get(gid)
        bn = binary_counts.get(gid)
        rows.append(
            {
                "id": gid,
                "name": name,
                "bt": ratings[i],
                "bt_low": low[i],
                "bt_high": high[i],
                "rank": int(ranks[i]) or None,
                "provisional": bool(is_provisional[i]),
                "pairwise_votes": int(wins[i] + losses[i] + tie_n[i]),
                "wins": int(wins[i]),
                "losses": int(losses[i]),
                "ties": int(tie_n[i]),
                "likert": _likert(lk) if lk is not None and lk.sum() else None,
                "binary": stats.binary_summary(bn[0], bn[1]) if bn and bn[1] else None,
            }
        )
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, -(r["bt"] if r["bt"] == r["bt"] else -1e9)))
    likert_n = int(sum(c.sum() for c in likert_counts.values()))
    binary_n = int(sum(c[1] for c in binary_counts.values()))
    return {
        "generators": rows,
        "order": [g[0] for g in generators],
        "win_rate": win_rate,
        "counts": counts,
        "predicted": predicted,
        "stderr": stderr,
        "votes_total": pairwise_total + likert_n + binary_n,
        "totals": {"pairwise": pairwise_total, "likert": likert_n, "binary": binary_n},
        "bootstrap_rounds": rounds if pairwise_total else 0,
        "bootstrap_unit": "prompts" if by_prompt else "votes",
        "min_votes": min_votes,
        "provisional_count": int(sum(1 for r in rows if r["provisional"] and r["pairwise_votes"])),
        "all_provisional": bool(pairwise_total) and all(r["provisional"] for r in rows),
    }


def _likert(counts) -> dict:
    """Rating mean with an interval that stays inside the 1–5 scale (see stats.likert_mean_interval)."""
    mean, low, high, n = stats.likert_mean_interval(counts)
    return {"mean": mean, "low": low, "high": high, "n": n, "method": "bootstrap"}


def _votes_needed(data: dict) -> dict:
    """The board's votes-still-needed claim (board.votes_needed) from a fitted board."""
    pos = {gid: i for i, gid in enumerate(data["order"])}
    ranked = [g for g in data["generators"] if g["rank"]]
    estimate = None
    if len(ranked) >= 2:
        estimate = stats.votes_to_settle(
            [g["bt"] for g in ranked], [data["stderr"][pos[g["id"]]] for g in ranked], data["totals"]["pairwise"]
        )
    return board_rules.votes_needed(
        estimate, data["totals"]["pairwise"], ranked=len(ranked), provisional_count=data["provisional_count"]
    )


def _position_bias_rows(counts: AnnotatorCounts, criterion_id: int) -> list[tuple[str, int, int]]:
    """(pseudonym, left, decisive) of the annotators not excluded with decisive pairwise votes
    on the criterion, by pseudonym."""
    sides = counts.criterion == criterion_id
    left = counts.per_annotator(counts.left, sides)
    decisive = counts.per_annotator(counts.decisive, sides)
    people = Annotator.objects.filter(pk__in=list(decisive), excluded=False).values_list("pk", "pseudonym")
    return sorted((pseudonym, left.get(pk, 0), decisive[pk]) for pk, pseudonym in people)


def _position_bias(rows) -> dict:
    per = {pseudonym: [left, n] for pseudonym, left, n in rows}
    left = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    overall = stats.position_bias(left, total) if total else None
    shown = sorted(per.items(), key=lambda kv: -kv[1][1])[:ANNOTATOR_BIAS_ROWS]
    biases = stats.position_biases([v[0] for _, v in shown], [v[1] for _, v in shown])
    annotators = [{"annotator": p, **bias} for (p, _), bias in zip(shown, biases)]
    return {"overall": overall, "annotators": annotators}


AGREEMENT_CI_ROUNDS = 200


def _agreement(items: ItemCounts, criterion_id: int) -> dict:
    """Krippendorff's alpha per vote kind, from the criterion's value counts per item (votes of
    annotators not excluded), with a 95 % bootstrap interval that resamples prompts
    (stats.krippendorff_alpha_ci).

    Items: an output for ratings and good/bad votes; an unordered pair of outputs for pairwise
    votes, whose outcome is put in the pair's canonical orientation (lower output id wins 0,
    tie 1, higher id wins 2, both bad 3; nominal).
    """
    out = {}
    u0, u1, value = items.items()
    n = items.counted
    levels = {VoteKind.LIKERT: "ordinal", VoteKind.BINARY: "nominal", VoteKind.PAIRWISE: "nominal"}
    for kind, level in levels.items():
        keep = (items.kind == kind) & (items.criterion == criterion_id) & (n > 0)
        # An item's prompt is its (lower) output's: read from the outputs afterwards, so the
        # aggregation over every vote joins nothing.
        if kind == VoteKind.PAIRWISE:
            rows = np.stack([u0[keep], u1[keep], value[keep], n[keep]], axis=1)
        else:
            rows = np.stack([u1[keep], np.zeros(keep.sum(), dtype=np.int64), value[keep], n[keep]], axis=1)
        empty = {"alpha": None, "low": None, "high": None, "units": 0, "prompts": 0, "level": level}
        if len(rows) == 0:
            out[kind] = empty
            continue
        # Rows of one item and value merge (the counts keep the orientation the votes came in).
        keys, first, unit = np.unique(rows[:, 0] * (rows[:, 1].max() + 1) + rows[:, 1], return_index=True, return_inverse=True)
        unit = unit.ravel()
        values, code = np.unique(rows[:, 2], return_inverse=True)
        counts = np.zeros((keys.size, values.size))
        np.add.at(counts, (unit, code), rows[:, 3])
        unit_prompt = _prompts_of(rows[first, 0])
        pairable = counts.sum(axis=1) >= 2
        if not pairable.any():
            out[kind] = empty
            continue
        alpha = stats.krippendorff_alpha_from_counts(counts[pairable], values, level)
        low, high = stats.krippendorff_alpha_ci(
            counts[pairable], values, level, clusters=unit_prompt[pairable], rounds=AGREEMENT_CI_ROUNDS, seed=0
        )
        out[kind] = {"alpha": alpha, "low": low, "high": high, "units": int(pairable.sum()),
                     "prompts": int(np.unique(unit_prompt[pairable]).size), "level": level}
    return out
