"""Feeding the rating engine from the database and storing what it computes.

- Online Elo: every committed pairwise vote is applied exactly once, in vote order, under a
  row lock on the study's EloState (a retry or a second worker finds nothing left to apply).
- Full recompute (Bradley–Terry + bootstrap, Likert and binary intervals, matrices, position
  bias, agreement): debounced after votes, at most one running per study, from per-pair
  counts aggregated in SQL.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, IntegerField, Q, Value, When
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from arena.models import Annotator, Generator, Study, Vote, VoteKind
from arena.selectors import counted_votes, withdrawn_output_ids
from arena.sampling import bt_standard_errors

from . import bradley_terry as bt
from . import board as board_rules
from . import stats
from .elo import elo_step
from .quality import annotator_quality_store
from .models import EloState, LeaderboardResult, RecomputeState

logger = logging.getLogger(__name__)

ELO_BATCH = 20_000
STALE_RUN = timedelta(minutes=15)
ANNOTATOR_BIAS_ROWS = 50


# --------------------------------------------------------------------------- scheduling

def ratings_vote_committed(*, study_id: int, criterion_id: int) -> None:
    """Called after a vote commits: queue the Elo update and the debounced recompute."""
    elo_schedule(study_id=study_id, criterion_id=criterion_id)
    recompute_schedule(study_id=study_id)


def _flag_scheduled(model, **lookup) -> bool:
    """Mark the state row's work as queued; True when this call did it (and must queue the task).

    A plain read comes first: while the work is already queued (the usual case under load) a vote
    costs no write and never waits on a lock held by the running task.
    """
    current = model.objects.filter(**lookup).values_list("scheduled", flat=True).first()
    if current:
        return False
    if current is None:
        _, created = model.objects.get_or_create(**lookup, defaults={"scheduled": True})
        if created:
            return True
    return bool(model.objects.filter(**lookup, scheduled=False).update(scheduled=True))


def elo_schedule(*, study_id: int, criterion_id: int) -> None:
    from .tasks import elo_apply_task

    if _flag_scheduled(EloState, study_id=study_id, criterion_id=criterion_id):
        elo_apply_task.delay(study_id, criterion_id)


def recompute_schedule(*, study_id: int, countdown: float | None = None) -> None:
    from .tasks import recompute_task

    if _flag_scheduled(RecomputeState, study_id=study_id):
        delay = settings.ARENA_RECOMPUTE_DEBOUNCE_SECONDS if countdown is None else countdown
        recompute_task.apply_async((study_id,), countdown=delay)


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
    """Apply every committed, not yet applied pairwise vote in id order. Returns how many."""
    EloState.objects.filter(study_id=study_id, criterion_id=criterion_id).update(scheduled=False)
    both_bad_as_tie = Study.objects.filter(pk=study_id).values_list("both_bad_as_tie", flat=True).first()
    if both_bad_as_tie is None:
        return 0
    withdrawn = withdrawn_output_ids(study_id)
    applied = 0
    while True:
        with transaction.atomic():
            state, _ = EloState.objects.get_or_create(study_id=study_id, criterion_id=criterion_id)
            state = EloState.objects.select_for_update().get(pk=state.pk)
            rows = list(
                Vote.objects.filter(study_id=study_id, criterion_id=criterion_id, elo_applied=False)
                .order_by("id")
                .values_list("id", "kind", "is_gold", "annotator__excluded", "generator_left_id", "generator_right_id", "choice",
                             "output_left_id", "output_right_id")[:ELO_BATCH]
            )
            if not rows:
                return applied
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
            Vote.objects.filter(id__in=ids).update(elo_applied=True)
            state.ratings = {str(k): v for k, v in ratings.items()}
            state.last_vote_id = max(state.last_vote_id, ids[-1])
            state.save(update_fields=["ratings", "votes_applied", "last_vote_id", "updated_at"])
            applied += len(rows)
        if len(rows) < ELO_BATCH:
            return applied


def elo_rebuild(*, study_id: int) -> None:
    """Replay Elo from the first vote (after annotators or outputs were excluded or included again)."""
    for state in EloState.objects.filter(study_id=study_id):
        with transaction.atomic():
            locked = EloState.objects.select_for_update().get(pk=state.pk)
            Vote.objects.filter(study_id=study_id, criterion_id=locked.criterion_id, elo_applied=True).update(elo_applied=False)
            locked.ratings, locked.votes_applied, locked.last_vote_id = {}, 0, 0
            locked.save(update_fields=["ratings", "votes_applied", "last_vote_id", "updated_at"])
        elo_apply(study_id=study_id, criterion_id=locked.criterion_id)


def annotator_exclusion_set(*, annotator: Annotator, excluded: bool, reason: str = "") -> None:
    """Exclude an annotator from every rating (votes are kept), or include them again."""
    annotator.excluded = excluded
    annotator.excluded_reason = reason[:300] if excluded else ""
    annotator.excluded_at = timezone.now() if excluded else None
    annotator.save(update_fields=["excluded", "excluded_reason", "excluded_at"])
    from .tasks import elo_rebuild_task

    for study_id in Vote.objects.filter(annotator=annotator).values_list("study_id", flat=True).distinct():
        transaction.on_commit(lambda sid=study_id: (elo_rebuild_task.delay(sid), recompute_schedule(study_id=sid, countdown=0)))


def output_withdrawal_set(*, study: Study, output, withdrawn: bool, reason: str = "", by=None) -> None:
    """Withdraw an output from a study (its votes are kept, left out of every number), or restore it.

    Like excluding an annotator: Elo is replayed and the full recompute queued after commit.
    """
    from arena.models import WithdrawnOutput

    if withdrawn:
        WithdrawnOutput.objects.get_or_create(study=study, output=output, defaults={"reason": reason[:300], "by": by})
    else:
        WithdrawnOutput.objects.filter(study=study, output=output).delete()
    from .tasks import elo_rebuild_task

    transaction.on_commit(lambda sid=study.pk: (elo_rebuild_task.delay(sid), recompute_schedule(study_id=sid, countdown=0)))


# --------------------------------------------------------------------------- full recompute


def recompute_claim(*, study_id: int) -> bool:
    now = timezone.now()
    RecomputeState.objects.get_or_create(study_id=study_id)
    claimed = RecomputeState.objects.filter(study_id=study_id, running=False).update(
        running=True, scheduled=False, started_at=now
    )
    if not claimed:  # a run that died long ago does not block forever
        claimed = RecomputeState.objects.filter(study_id=study_id, running=True, started_at__lt=now - STALE_RUN).update(
            running=True, scheduled=False, started_at=now
        )
    return bool(claimed)


def study_recompute(*, study_id: int) -> bool:
    """Recompute every stored leaderboard of a study. False if another run holds the claim."""
    if not recompute_claim(study_id=study_id):
        return False
    t0 = time.perf_counter()
    error = ""
    try:
        study = Study.objects.get(pk=study_id)
        for criterion in study.criteria.all():
            _recompute_criterion(study, criterion)
        annotator_quality_store(study=study)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        logger.exception("recompute of study %s failed", study_id)
        raise
    finally:
        RecomputeState.objects.filter(study_id=study_id).update(
            running=False,
            finished_at=timezone.now(),
            last_duration_ms=int((time.perf_counter() - t0) * 1000),
            last_error=error,
        )
    return True


_clean = board_rules.json_safe


def _recompute_criterion(study: Study, criterion) -> None:
    base = counted_votes(Vote.objects.filter(study=study, criterion=criterion, is_gold=False, annotator__excluded=False), study=study)
    generators = list(Generator.objects.filter(studies=study).order_by("name").values_list("id", "name"))
    index = {gid: i for i, (gid, _) in enumerate(generators)}
    n = len(generators)

    # Pairwise counts per category and generator pair, aggregated in SQL.
    pair_rows = (
        base.filter(kind=VoteKind.PAIRWISE)
        .values_list("prompt_category", "generator_left_id", "generator_right_id", "choice")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_prompt = study.bootstrap_unit == Study.BootstrapUnit.PROMPTS
    if by_prompt:
        pair_rows = (
            base.filter(kind=VoteKind.PAIRWISE)
            .values_list("prompt_category", "output_left__prompt_id", "generator_left_id", "generator_right_id", "choice")
            .annotate(n=Count("id"))
            .order_by()
        )
    else:
        pair_rows = ((cat, 0, gl, gr, choice, cnt) for cat, gl, gr, choice, cnt in pair_rows)
    # category -> (prompt or 0, generator pair) -> [left, right, tie, both bad]
    pairs: dict[str, dict[tuple[int, int, int], list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for cat, prompt_id, gl, gr, choice, cnt in pair_rows:
        if gl not in index or gr not in index:
            continue
        slot = {"left": 0, "right": 1, "tie": 2, "bothbad": 3}[choice]
        for key in ("", cat) if cat else ("",):
            pairs[key][(prompt_id, index[gl], index[gr])][slot] += cnt

    likert: dict[str, dict[int, np.ndarray]] = defaultdict(lambda: defaultdict(lambda: np.zeros(5)))
    for cat, gid, score, cnt in (
        base.filter(kind=VoteKind.LIKERT).values_list("prompt_category", "generator_left_id", "score").annotate(n=Count("id")).order_by()
    ):
        for key in ("", cat) if cat else ("",):
            likert[key][gid][score - 1] += cnt
    binary: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for cat, gid, score, cnt in (
        base.filter(kind=VoteKind.BINARY).values_list("prompt_category", "generator_left_id", "score").annotate(n=Count("id")).order_by()
    ):
        for key in ("", cat) if cat else ("",):
            binary[key][gid][0] += cnt * score
            binary[key][gid][1] += cnt

    bias_rows = list(
        base.filter(kind=VoteKind.PAIRWISE, choice__in=["left", "right"])
        .values_list("annotator__pseudonym", "choice")
        .annotate(n=Count("id"))
        .order_by()
    )
    agreement = _agreement(base)

    categories = {""} | set(pairs) | set(likert) | set(binary)
    now = timezone.now()
    keep = []
    for cat in sorted(categories):
        # Category cuts use fewer bootstrap rounds so a study with many categories stays quick.
        rounds = settings.ARENA_BOOTSTRAP_ROUNDS if cat == "" else max(100, settings.ARENA_BOOTSTRAP_ROUNDS // 5)
        data = _board(
            generators, n, pairs.get(cat, {}), likert.get(cat, {}), binary.get(cat, {}), study.both_bad_as_tie, rounds,
            min_votes=study.min_votes_per_generator, by_prompt=by_prompt,
        )
        if cat == "":
            data["position_bias"] = _position_bias(bias_rows)
            data["agreement"] = agreement
            needed = _votes_needed(data)
            data["votes_needed"] = needed["value"]
            data["votes_needed_status"] = needed["status"]
        LeaderboardResult.objects.update_or_create(
            study=study, criterion=criterion, category=cat,
            defaults={"computed_at": now, "votes_total": data["votes_total"], "data": _clean(data)},
        )
        keep.append(cat)
    LeaderboardResult.objects.filter(study=study, criterion=criterion).exclude(category__in=keep).delete()


def _board(generators, n, pair_counts, likert_counts, binary_counts, both_bad_as_tie, rounds: int,
           *, min_votes: int = 1, by_prompt: bool = False) -> dict:
    idx_a, idx_b, wa, wb, ties, bothbad, clusters = [], [], [], [], [], [], []
    for (prompt_id, i, j), (left, right, tie, bb) in pair_counts.items():
        clusters.append(prompt_id)
        idx_a.append(i)
        idx_b.append(j)
        wa.append(left)
        wb.append(right)
        ties.append(tie + (bb if both_bad_as_tie else 0))
        bothbad.append(bb)
    idx_a, idx_b = np.asarray(idx_a, dtype=np.int64), np.asarray(idx_b, dtype=np.int64)
    wa, wb, ties = np.asarray(wa, dtype=float), np.asarray(wb, dtype=float), np.asarray(ties, dtype=float)
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
    wins = np.zeros(n)
    losses = np.zeros(n)
    tie_n = np.zeros(n)
    for a, b, x, y, t in zip(idx_a, idx_b, wa, wb, ties):
        wins[a] += x
        wins[b] += y
        losses[a] += y
        losses[b] += x
        tie_n[a] += t
        tie_n[b] += t
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


def _position_bias(rows) -> dict:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pseudonym, choice, cnt in rows:
        per[pseudonym][1] += cnt
        if choice == "left":
            per[pseudonym][0] += cnt
    left = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    overall = stats.position_bias(left, total) if total else None
    annotators = [
        {"annotator": p, **stats.position_bias(v[0], v[1])}
        for p, v in sorted(per.items(), key=lambda kv: -kv[1][1])[:ANNOTATOR_BIAS_ROWS]
    ]
    return {"overall": overall, "annotators": annotators}


AGREEMENT_CI_ROUNDS = 200


def _agreement(base) -> dict:
    """Krippendorff's alpha per vote kind, from value counts per item aggregated in SQL, with a
    95 % bootstrap interval that resamples prompts (stats.krippendorff_alpha_ci).

    Items: an output for ratings and good/bad votes; an unordered pair of outputs for pairwise
    votes, whose outcome is put in the pair's canonical orientation (lower output id wins 0,
    tie 1, higher id wins 2, both bad 3; nominal).
    """
    out = {}
    lo, hi = Least("output_left_id", "output_right_id"), Greatest("output_left_id", "output_right_id")
    pairwise_value = Case(
        When(choice="tie", then=Value(1)),
        When(choice="bothbad", then=Value(3)),
        When(Q(choice="left", output_left_id__lt=F("output_right_id")) | Q(choice="right", output_right_id__lt=F("output_left_id")), then=Value(0)),
        default=Value(2),
        output_field=IntegerField(),
    )
    prompt = "output_left__prompt_id"
    specs = {
        VoteKind.LIKERT: ("ordinal", base.filter(kind=VoteKind.LIKERT).values_list("output_left_id", Value(0), prompt, "score")),
        VoteKind.BINARY: ("nominal", base.filter(kind=VoteKind.BINARY).values_list("output_left_id", Value(0), prompt, "score")),
        VoteKind.PAIRWISE: ("nominal", base.filter(kind=VoteKind.PAIRWISE).annotate(u0=lo, u1=hi, v=pairwise_value).values_list("u0", "u1", prompt, "v")),
    }
    for kind, (level, qs) in specs.items():
        rows = np.array(list(qs.annotate(n=Count("id")).order_by()), dtype=np.int64).reshape(-1, 5)
        empty = {"alpha": None, "low": None, "high": None, "units": 0, "prompts": 0, "level": level}
        if len(rows) == 0:
            out[kind] = empty
            continue
        keys, first, unit = np.unique(rows[:, 0] * (rows[:, 1].max() + 1) + rows[:, 1], return_index=True, return_inverse=True)
        values, code = np.unique(rows[:, 3], return_inverse=True)
        counts = np.zeros((keys.size, values.size))
        np.add.at(counts, (unit, code), rows[:, 4])
        unit_prompt = rows[first, 2]
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
