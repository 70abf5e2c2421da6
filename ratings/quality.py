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

import numpy as np
from django.db.models import Case, Count, F, IntegerField, Q, Value, When, Window
from django.db.models.functions import Coalesce, Greatest, Least, RowNumber
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


def pairwise_outcome():
    """A pairwise vote's outcome in its pair's canonical orientation, as an SQL expression:
    lower output id wins 0, tie 1, higher id wins 2, both bad 3."""
    return Case(
        When(choice="tie", then=Value(1)),
        When(choice="bothbad", then=Value(3)),
        When(Q(choice="left", output_left_id__lt=F("output_right_id")) | Q(choice="right", output_right_id__lt=F("output_left_id")), then=Value(0)),
        default=Value(2),
        output_field=IntegerField(),
    )


def _agreement_with_others(base) -> dict[int, tuple[int, int]]:
    """annotator id -> (answers matching the others' majority, answers on items others answered).

    Item value counts are aggregated in SQL over every vote; each annotator's answers are read
    for their latest AGREEMENT_SAMPLE_PER_ANNOTATOR votes (enough to tell, and bounded however
    large the study grows).
    """
    lo, hi = Least("output_left_id", Coalesce("output_right_id", Value(0))), Greatest("output_left_id", Coalesce("output_right_id", Value(0)))
    value = Case(When(kind=VoteKind.PAIRWISE, then=pairwise_outcome()), default=F("score"), output_field=IntegerField())
    # A question check has an answer per question, not one value: it is judged on the board's question audit.
    annotated = base.exclude(kind=VoteKind.QUESTIONS).annotate(u0=lo, u1=hi, v=value)
    counts: dict[tuple, dict[int, int]] = defaultdict(dict)
    for kind, crit, u0, u1, v, n in annotated.values_list("kind", "criterion_id", "u0", "u1", "v").annotate(n=Count("id")).order_by():
        counts[(kind, crit, u0, u1)][v] = n
    latest = annotated.annotate(
        rank=Window(RowNumber(), partition_by=[F("annotator_id")], order_by=F("id").desc())
    ).filter(rank__lte=AGREEMENT_SAMPLE_PER_ANNOTATOR)
    out: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for aid, kind, crit, u0, u1, v in latest.values_list("annotator_id", "kind", "criterion_id", "u0", "u1", "v"):
        others = dict(counts.get((kind, crit, u0, u1), {}))
        others[v] = others.get(v, 0) - 1
        others = {k: c for k, c in others.items() if c > 0}
        if not others:
            continue  # nobody else answered this item
        if kind == VoteKind.LIKERT:
            expanded = [k for k, c in others.items() for _ in range(c)]
            match = abs(v - float(np.median(expanded))) <= 1
        else:
            top = max(others.values())
            majority = [k for k, c in others.items() if c == top]
            if len(majority) > 1:
                continue  # the others are split: nothing to agree with
            match = v == majority[0]
        out[aid][0] += int(match)
        out[aid][1] += 1
    return {aid: (m, n) for aid, (m, n) in out.items()}


def annotator_quality_compute(*, study: Study) -> list[dict]:
    votes = counted_votes(Vote.objects.filter(study=study), study=study)
    counted = votes.filter(is_gold=False)
    per = defaultdict(dict)
    for aid, n in counted.values_list("annotator_id").annotate(n=Count("id")).order_by():
        per[aid]["votes"] = n
    for aid, n, right in (
        votes.filter(is_gold=True).values_list("annotator_id").annotate(n=Count("id"), right=Count("id", filter=Q(gold_correct=True))).order_by()
    ):
        per[aid]["gold"] = (right, n)
    for aid, n, skipped in (
        Assignment.objects.filter(study=study, answered_at__isnull=False).values_list("annotator_id")
        .annotate(n=Count("id"), skipped=Count("id", filter=Q(skipped=True))).order_by()
    ):
        per[aid]["skip"] = (skipped, n)
    buckets = counted.annotate(b=F("response_ms") / RESPONSE_BUCKET_MS).values_list("annotator_id", "b").annotate(n=Count("id")).order_by()
    medians = _medians_from_histogram(buckets)
    for aid, left, n in (
        counted.filter(kind=VoteKind.PAIRWISE, choice__in=["left", "right"]).values_list("annotator_id")
        .annotate(left=Count("id", filter=Q(choice="left")), n=Count("id")).order_by()
    ):
        per[aid]["left"] = (left, n)
    agree = _agreement_with_others(counted)
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
        left, n = d.get("left", (0, 0))
        row["left"] = stats.position_bias(left, n) if n else None
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


def annotator_quality_store(*, study: Study) -> AnnotatorQuality:
    obj, _ = AnnotatorQuality.objects.update_or_create(
        study=study, defaults={"computed_at": timezone.now(), "data": json_safe(annotator_quality_compute(study=study))}
    )
    return obj
