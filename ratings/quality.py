"""Per-annotator quality for the staff review list, computed by the full recompute.

For every annotator of a study: gold accuracy, agreement with the others (leave-one-out:
the share of their answers on items others also answered that match the others' majority;
a 1–5 rating matches when it is within 1 of the others' median), left-side rate of decisive
pairwise votes with its binomial test against 0.5, skip rate and median response time. An
annotator is marked for review when a figure crosses the study's threshold and rests on
enough data (MIN_EVIDENCE).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from django.db import connection
from django.db.models import Count, F, Q, Window
from django.db.models.expressions import RawSQL
from django.db.models.functions import RowNumber
from django.utils import timezone

from arena.models import Annotator, Assignment, Study, Vote, VoteKind
from arena.selectors import counted_votes

from . import stats
from .board import json_safe
from .models import AnnotatorQuality

MIN_EVIDENCE = {"gold": 5, "agreement": 10, "skip": 10, "speed": 10, "left": 10}
RESPONSE_BUCKET_MS = 100


def _medians_from_histogram(rows) -> dict[int, float]:
    hist: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for aid, bucket, n in rows:
        hist[aid].append((bucket, n))
    out = {}
    for aid, bins in hist.items():
        bins.sort()
        total = sum(n for _, n in bins)
        seen = 0
        for bucket, n in bins:
            seen += n
            if seen * 2 >= total:
                out[aid] = (bucket + 0.5) * RESPONSE_BUCKET_MS / 1000.0
                break
    return out


AGREEMENT_SAMPLE_PER_ANNOTATOR = 300
ITEM_VALUES = 6
"""Item values run 0-5: pairwise outcomes 0-3 (pairwise_outcome), ratings 1-5, good/bad 0-1."""


def pairwise_outcome(output_left, output_right, choice) -> np.ndarray:
    """Pairwise votes' outcomes in their pair's canonical orientation (arrays in, array out):
    lower output id wins 0, tie 1, higher id wins 2, both bad 3."""
    output_left, output_right, choice = np.asarray(output_left), np.asarray(output_right), np.asarray(choice)
    lower_won = ((choice == "left") & (output_left < output_right)) | ((choice == "right") & (output_right < output_left))
    return np.where(choice == "tie", 1, np.where(choice == "bothbad", 3, np.where(lower_won, 0, 2)))


def item_values(kind, output_left, output_right, choice, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The item (u0, u1) each vote answered and the value it gave, as arrays.

    An item is the unordered pair of outputs of a pairwise vote, the output of any other vote
    (u0 = 0, u1 its output); the value is the pairwise outcome, or the score. `output_right`
    is 0 where a vote has none, `score` anything where it has none.
    """
    kind, left, right = np.asarray(kind), np.asarray(output_left, dtype=np.int64), np.asarray(output_right, dtype=np.int64)
    pairwise = kind == VoteKind.PAIRWISE
    value = np.where(pairwise, pairwise_outcome(left, right, choice), np.asarray(score, dtype=np.int64))
    return np.minimum(left, right), np.maximum(left, right), value


@dataclass(frozen=True)
class ItemCounts:
    """Counted, non-gold votes of a study other than question checks, counted per criterion,
    kind, outputs (with their generators and the prompt category the votes were cast under) and
    answer in one aggregation over every vote: `n` all of them, `n_excluded` those of excluded
    annotators. The boards' counts and agreement (without excluded annotators) and the
    annotators' agreement with the others (with them) all read it."""

    kind: np.ndarray
    criterion: np.ndarray
    prompt_category: np.ndarray
    generator_left: np.ndarray
    generator_right: np.ndarray  # 0: none
    output_left: np.ndarray
    output_right: np.ndarray  # 0: none
    choice: np.ndarray
    score: np.ndarray  # 0: none
    n: np.ndarray
    n_excluded: np.ndarray

    def items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return item_values(self.kind, self.output_left, self.output_right, self.choice, self.score)

    @property
    def counted(self) -> np.ndarray:
        """Per row, the votes of annotators not excluded (what every board counts)."""
        return self.n - self.n_excluded


_ITEM_TEXT = ("kind", "prompt_category", "choice")


def item_counts(*, study: Study) -> ItemCounts:
    votes = counted_votes(Vote.objects.filter(study=study), study=study).filter(is_gold=False).exclude(kind=VoteKind.QUESTIONS)
    excluded = Annotator.objects.filter(excluded=True).values("id")
    names = ("kind", "criterion", "prompt_category", "generator_left", "generator_right", "output_left", "output_right",
             "choice", "score", "n", "n_excluded")
    grouped = (
        votes.values_list("kind", "criterion_id", "prompt_category", "generator_left_id", "generator_right_id",
                          "output_left_id", "output_right_id", "choice", "score")
        .annotate(n=Count("id"), n_excluded=Count("id", filter=Q(annotator_id__in=excluded)))
        .order_by()
    )
    columns = _columns(grouped, len(names))
    return ItemCounts(**{
        name: np.array(col, dtype=str) if name in _ITEM_TEXT else np.array(col, dtype=np.int64)
        for name, col in zip(names, columns)
    })


def _columns(queryset, width: int) -> list[list]:
    """The rows of a values_list query as `width` columns, NULL read as 0.

    On PostgreSQL the server packs each column into one array (one value to read per column
    rather than one tuple per row: 138,000 item counts of 1M votes read in 0.03 s, not 0.4 s).
    """
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Unnamed columns of the inner query, numbered in the outer one.
            names = [f"c{k}" for k in range(width)]
            packed = ", ".join(f"array_agg(g.{c})" for c in names)
            cursor.execute(f"SELECT {packed} FROM ({sql}) AS g({', '.join(names)})", params)
            columns = [c or [] for c in cursor.fetchone()]  # no rows: NULL arrays
        else:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in range(width)]
    return [[0 if x is None else x for x in c] if None in c else c for c in columns]


def row_codes(columns: list[np.ndarray]) -> np.ndarray:
    """Rows numbered by their values in `columns` (equal rows, equal numbers), densely from 0 in
    the columns' sort order. Any column types; no overflow however many distinct values."""
    code = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        values, inverse = np.unique(column, return_inverse=True)
        _, code = np.unique(code * values.size + inverse.ravel(), return_inverse=True)  # dense again
        code = code.ravel()
    return code


def _agreement_with_others(items: ItemCounts, sample: list[tuple]) -> dict[int, tuple[int, int]]:
    """annotator id -> (answers matching the others' majority, answers on items others answered).

    Item value counts come from `items` (every vote); each annotator's answers are their latest
    AGREEMENT_SAMPLE_PER_ANNOTATOR votes, `sample` (enough to tell, and bounded however large
    the study grows).
    """
    if not sample:
        return {}
    u0, u1, v = items.items()
    aid = np.array([r[0] for r in sample], dtype=np.int64)
    kind = np.array([r[1] for r in sample], dtype=object).astype(str)
    s_u0, s_u1, s_v = item_values(
        kind, [r[3] for r in sample], [r[4] or 0 for r in sample], np.array([r[5] for r in sample], dtype=object).astype(str),
        [r[6] or 0 for r in sample],
    )
    # Items of the counts and of the sampled answers numbered together (an answer read after
    # the counts may have an item of its own: nobody else answered it then).
    unit = row_codes([np.concatenate([items.kind, kind]), np.concatenate([items.criterion, [r[2] for r in sample]]),
                      np.concatenate([u0, s_u0]), np.concatenate([u1, s_u1])])
    counts = np.zeros((unit.max() + 1, ITEM_VALUES), dtype=np.int64)
    np.add.at(counts, (unit[: len(v)], v), items.n)
    others = counts[unit[len(v):]]
    others[np.arange(len(sample)), s_v] -= 1
    others = np.maximum(others, 0)
    answered = others.sum(axis=1)
    likert = kind == VoteKind.LIKERT
    # Ratings: within 1 of the others' median.
    rating_match = np.abs(s_v - _median_of_counts(others)) <= 1
    # Other kinds: the others' single most frequent answer (none when they are split).
    top = others.max(axis=1)
    single = (others == top[:, None]).sum(axis=1) == 1
    majority_match = others.argmax(axis=1) == s_v
    judged = (answered > 0) & (likert | single)
    match = np.where(likert, rating_match, majority_match) & judged
    ids, position = np.unique(aid[judged], return_inverse=True)
    matched = np.bincount(position.ravel(), weights=match[judged], minlength=ids.size)
    judged_n = np.bincount(position.ravel(), minlength=ids.size)
    return {int(a): (int(m), int(n)) for a, m, n in zip(ids, matched, judged_n)}


def _median_of_counts(counts: np.ndarray) -> np.ndarray:
    """Per row, the median of the values 0..k-1 taken counts[row, value] times (NaN for none)."""
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    lower = np.argmax(cumulative > ((total - 1) // 2)[:, None], axis=1)
    upper = np.argmax(cumulative > (total // 2)[:, None], axis=1)
    return np.where(total > 0, (lower + upper) / 2.0, np.nan)


def _latest_votes(votes, annotators: list[int]) -> list[tuple]:
    """Each annotator's latest AGREEMENT_SAMPLE_PER_ANNOTATOR votes of `votes`:
    (annotator, kind, criterion, output left, output right, choice, score). `annotators`: at
    least everyone with votes among `votes`."""
    fields = ("annotator_id", "kind", "criterion_id", "output_left_id", "output_right_id", "choice", "score")
    if connection.vendor == "postgresql":
        # Per annotator, a backward walk of the (annotator, study, id) index that stops at the
        # sample's size, rather than numbering every vote of the study in a sort.
        one = votes.filter(annotator_id=RawSQL("a.id", ())).order_by("-id").values_list(*fields)[:AGREEMENT_SAMPLE_PER_ANNOTATOR]
        sql, params = one.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT s.* FROM unnest(%s::bigint[]) AS a(id) CROSS JOIN LATERAL ({sql}) s", [annotators, *params])
            return cursor.fetchall()
    latest = votes.annotate(
        rank=Window(RowNumber(), partition_by=[F("annotator_id")], order_by=F("id").desc())
    ).filter(rank__lte=AGREEMENT_SAMPLE_PER_ANNOTATOR)
    return list(latest.values_list(*fields))


@dataclass(frozen=True)
class AnnotatorCounts:
    """Counted votes of a study per annotator, criterion and response-time bucket, in one
    aggregation over every vote: non-gold votes, gold votes and those answered right, and the
    non-gold pairwise votes that picked a side (`decisive`) and the left one (`left`). The
    annotator review and the board's position bias both read it."""

    annotator: np.ndarray
    criterion: np.ndarray
    bucket: np.ndarray
    votes: np.ndarray
    gold: np.ndarray
    gold_right: np.ndarray
    decisive: np.ndarray
    left: np.ndarray

    def per_annotator(self, values: np.ndarray, mask: np.ndarray | None = None) -> dict[int, int]:
        """annotator id -> sum of `values` over the rows (where `mask`), for sums that are not 0,
        in annotator id order."""
        keep = np.ones(self.annotator.size, dtype=bool) if mask is None else mask
        ids, position = np.unique(self.annotator[keep], return_inverse=True)
        sums = np.bincount(position.ravel(), weights=values[keep], minlength=ids.size)
        return {int(a): int(x) for a, x in zip(ids, sums) if x}


def annotator_counts(*, study: Study) -> AnnotatorCounts:
    votes = counted_votes(Vote.objects.filter(study=study), study=study)
    own = Q(is_gold=False)
    decisive = own & Q(kind=VoteKind.PAIRWISE, choice__in=["left", "right"])
    grouped = (
        votes.annotate(b=F("response_ms") / RESPONSE_BUCKET_MS).values_list("annotator_id", "criterion_id", "b")
        .annotate(
            votes=Count("id", filter=own), gold=Count("id", filter=Q(is_gold=True)),
            gold_right=Count("id", filter=Q(is_gold=True, gold_correct=True)),
            decisive=Count("id", filter=decisive), left=Count("id", filter=decisive & Q(choice="left")),
        )
        .order_by()
    )
    return AnnotatorCounts(*(np.array(c, dtype=np.int64) for c in _columns(grouped, 8)))


@dataclass(frozen=True)
class AnnotatorAnswers:
    """What the review reads of each annotator besides the counts: their latest answers (the
    agreement sample: annotator, kind, criterion, output left, output right, choice, score) and
    their answered tasks, skipped or not."""

    latest: list[tuple]
    tasks: dict[int, tuple[int, int]]  # annotator id -> (skipped, answered)


def annotator_answers(*, study: Study, counts: AnnotatorCounts) -> AnnotatorAnswers:
    counted = counted_votes(Vote.objects.filter(study=study), study=study).filter(is_gold=False)
    # A question check has an answer per question, not one value: it is judged on the board's question audit.
    latest = _latest_votes(counted.exclude(kind=VoteKind.QUESTIONS), list(counts.per_annotator(counts.votes)))
    tasks = {
        aid: (skipped, n)
        for aid, n, skipped in Assignment.objects.filter(study=study, answered_at__isnull=False).values_list("annotator_id")
        .annotate(n=Count("id"), skipped=Count("id", filter=Q(skipped=True))).order_by("annotator_id")
    }
    return AnnotatorAnswers(latest=latest, tasks=tasks)


def annotator_reads(*, study: Study) -> tuple[AnnotatorCounts, AnnotatorAnswers]:
    """Everything the review and the boards read per annotator (one aggregation over every vote,
    then each annotator's latest answers and tasks)."""
    counts = annotator_counts(study=study)
    return counts, annotator_answers(study=study, counts=counts)


def annotator_quality_compute(*, study: Study, items: ItemCounts | None = None, counts: AnnotatorCounts | None = None,
                              answers: AnnotatorAnswers | None = None) -> list[dict]:
    """The review list; `items`, `counts` and `answers` when the caller already has them (the full recompute)."""
    items = item_counts(study=study) if items is None else items
    counts = annotator_counts(study=study) if counts is None else counts
    answers = annotator_answers(study=study, counts=counts) if answers is None else answers
    per = defaultdict(dict)
    for aid, n in counts.per_annotator(counts.votes).items():
        per[aid]["votes"] = n
    right = counts.per_annotator(counts.gold_right)
    for aid, n in counts.per_annotator(counts.gold).items():
        per[aid]["gold"] = (right.get(aid, 0), n)
    for aid, skip in answers.tasks.items():
        per[aid]["skip"] = skip
    own = counts.votes > 0
    ids, position = np.unique(np.stack([counts.annotator[own], counts.bucket[own]], axis=1), axis=0, return_inverse=True)
    histogram = np.bincount(position.ravel(), weights=counts.votes[own], minlength=len(ids))
    medians = _medians_from_histogram((int(a), int(b), int(n)) for (a, b), n in zip(ids, histogram))
    left = counts.per_annotator(counts.left)
    decisive = counts.per_annotator(counts.decisive)
    for aid, bias in zip(decisive, stats.position_biases([left.get(aid, 0) for aid in decisive], list(decisive.values()))):
        per[aid]["left"] = bias
    agree = _agreement_with_others(items, answers.latest)
    people = {a.pk: a for a in Annotator.objects.filter(pk__in=list(per)).select_related("user")}
    rows = []
    for aid, d in per.items():
        a = people.get(aid)
        if a is None:
            continue
        row = {
            "id": aid, "pseudonym": a.pseudonym, "account": a.user.get_username() if a.user_id else "",
            "crowd": bool(a.external_id), "excluded": a.excluded, "excluded_reason": a.excluded_reason,
            "votes": d.get("votes", 0), "reasons": [],
        }
        right, n = d.get("gold", (0, 0))
        row["gold"] = {"accuracy": right / n if n else None, "n": n}
        skipped, n = d.get("skip", (0, 0))
        row["skip"] = {"rate": skipped / n if n else None, "n": n}
        row["median_seconds"] = medians.get(aid)
        row["left"] = d.get("left")
        matched, n = agree.get(aid, (0, 0))
        row["agreement"] = {"rate": matched / n if n else None, "n": n}
        if row["gold"]["n"] >= MIN_EVIDENCE["gold"] and row["gold"]["accuracy"] < study.review_min_gold_accuracy:
            row["reasons"].append(f"gold accuracy {row['gold']['accuracy']:.0%} < {study.review_min_gold_accuracy:.0%}")
        if row["agreement"]["n"] >= MIN_EVIDENCE["agreement"] and row["agreement"]["rate"] < study.review_min_agreement:
            row["reasons"].append(f"agrees with others {row['agreement']['rate']:.0%} < {study.review_min_agreement:.0%}")
        if row["skip"]["n"] >= MIN_EVIDENCE["skip"] and row["skip"]["rate"] > study.review_max_skip_rate:
            row["reasons"].append(f"skips {row['skip']['rate']:.0%} > {study.review_max_skip_rate:.0%}")
        if row["votes"] >= MIN_EVIDENCE["speed"] and row["median_seconds"] is not None and row["median_seconds"] < study.review_min_median_seconds:
            row["reasons"].append(f"median answer {row['median_seconds']:.1f} s < {study.review_min_median_seconds:g} s")
        if row["left"] and row["left"]["n"] >= MIN_EVIDENCE["left"] and row["left"]["p_value"] <= study.review_max_left_p:
            row["reasons"].append(f"picks left {row['left']['share']:.0%} (p = {row['left']['p_value']:.1g})")
        rows.append(row)
    rows.sort(key=lambda r: (not r["reasons"], r["excluded"], -r["votes"]))
    return rows


def annotator_quality_store(*, study: Study, items: ItemCounts | None = None, counts: AnnotatorCounts | None = None,
                            answers: AnnotatorAnswers | None = None) -> AnnotatorQuality:
    data = annotator_quality_compute(study=study, items=items, counts=counts, answers=answers)
    obj, _ = AnnotatorQuality.objects.update_or_create(
        study=study, defaults={"computed_at": timezone.now(), "data": json_safe(data)}
    )
    return obj
