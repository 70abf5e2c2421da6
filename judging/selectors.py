"""Automated metrics next to the human board, and how well each agrees with people."""

from __future__ import annotations

import math

import numpy as np
from django.db.models import F, OuterRef, Subquery
from scipy import stats as sps

from arena.models import Study, Vote, VoteKind

from .models import GeneratorMetric, OutputScore

def _fmt(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _board_rows(study: Study, board: dict | None) -> list[dict]:
    if board and board.get("generators"):
        return board["generators"]
    return [{"id": g.pk, "name": g.name, "bt": None} for g in study.generators.order_by("name")]


def metrics_for_board(*, study: Study, board: dict | None) -> dict | None:
    """Columns of per-generator metrics, in the order the scorers declare them (added to the
    board's rows as ``metric_values``) and, per metric, Spearman and Kendall correlation with
    the Bradley–Terry ratings and the pairwise accuracy against decisive human votes. Works
    before any vote too (rows from the study's generators, no agreement then)."""
    from .scorers import metric_catalogue

    stored: dict[str, dict[int, tuple[float | None, dict, int]]] = {}
    questions: dict[str, dict[int, dict]] = {}
    for gid, metric, value, details, n in (
        GeneratorMetric.objects.filter(study=study).order_by("computed_at").values_list("generator_id", "metric", "value", "details", "n")
    ):
        stored.setdefault(metric, {})[gid] = (value, details or {}, n)
        for q, share in (details or {}).get("questions", {}).items():
            questions.setdefault(q, {})[gid] = share
    declared = [(cls, m) for cls, m in metric_catalogue() if m.key in stored]
    if not declared:
        return None
    rows = _board_rows(study, board)
    values = {m.key: {gid: v for gid, (v, _, _) in stored[m.key].items() if v is not None} for _, m in declared}
    for row in rows:
        row["metric_values"] = [_cell(m, stored[m.key].get(row["id"])) for _, m in declared]
    agreement, scatters = [], []
    from ratings.charts import scatter

    has_votes = bool(board and board.get("generators"))
    for cls, m in declared:
        if not has_votes:
            break
        pairs = [(r["name"], values[m.key].get(r["id"]), r.get("bt")) for r in rows]
        pts = [(n, v, b) for n, v, b in pairs if v is not None and b is not None]
        spearman = kendall = None
        sign = 1 if m.higher_is_better else -1
        mv = np.array([p[1] for p in pts]) * sign
        bv = np.array([p[2] for p in pts])
        if len(pts) >= 3 and np.ptp(mv) > 0 and np.ptp(bv) > 0:
            spearman = float(sps.spearmanr(mv, bv).statistic)
            kendall = float(sps.kendalltau(mv, bv).statistic)
        if m.per_output and cls.measures and m.per_output == cls.measures[0].name:
            acc, n = pairwise_accuracy_per_output(
                study=study, criterion_slug=board.get("criterion"), scorer=cls.name, higher=cls.measures[0].higher_is_better
            )
        else:
            acc, n = pairwise_accuracy_per_generator(board=board, values=values[m.key], higher=m.higher_is_better)
        agreement.append({
            "metric": m.key, "label": m.label, "formula": m.formula, "n": len(pts),
            "spearman": _fmt(spearman), "kendall": _fmt(kendall), "pairwise_accuracy": _fmt(acc),
            "pairwise_votes": n,
            "raw": {"spearman": spearman, "kendall": kendall, "pairwise_accuracy": acc},
        })
        # One scatter per scorer (its headline metric) keeps the page short.
        svg = scatter(pts, x_label=m.label, y_label="Bradley–Terry rating") if m is cls.metrics[0] else ""
        if svg:
            scatters.append(svg)
    names = [(r["id"], r["name"]) for r in rows]
    return {
        "columns": [
            {"key": m.key, "label": m.label, "formula": m.formula, "higher_is_better": m.higher_is_better,
             "direction": m.direction, "range": list(m.range), "scorer": cls.name}
            for cls, m in declared
        ],
        "rows": [{"name": r["name"], "values": r["metric_values"]} for r in rows],
        "agreement": agreement,
        "scatters": scatters,
        "question_generators": [n for _, n in names],
        "questions": [
            {"question": q, "shares": [_fmt(by_gen[g]["yes_share"], 2) if g in by_gen else "—" for g, _ in names]}
            for q, by_gen in sorted(questions.items())
        ],
    }


def _cell(metric, entry) -> dict:
    """A metric cell: the value, its interval (when stored) and why it is missing (if it is)."""
    if entry is None:
        return {"text": "—", "title": ""}
    value, details, n = entry
    if value is None:
        reason = details.get("unavailable", "not computable")
        return {"text": "n/a", "title": reason}
    low, high = details.get("ci_low"), details.get("ci_high")
    title = f"n = {n}"
    if low is not None and high is not None:
        title = f"95 % interval [{low:.{metric.digits}f}, {high:.{metric.digits}f}], n = {n}"
    elif "std" in details:
        title = f"± {details['std']:.{metric.digits}f} (std over subsets/splits), n = {n}"
    return {"text": _fmt(value, metric.digits), "title": title}


def pairwise_accuracy_per_output(
    *, study: Study, criterion_slug: str | None, scorer: str, higher: bool = True
) -> tuple[float | None, int]:
    """Share of decisive pairwise votes whose chosen output the metric also scores better
    (higher, or lower for a lower-is-better score); outputs the scorer skipped are left out."""
    score = OutputScore.objects.filter(scorer=scorer, value__isnull=False).order_by("-created_at")
    qs = Vote.objects.filter(study=study, kind=VoteKind.PAIRWISE, is_gold=False, annotator__excluded=False, choice__in=["left", "right"])
    if criterion_slug:
        qs = qs.filter(criterion__slug=criterion_slug)
    qs = qs.annotate(
        s_left=Subquery(score.filter(output_id=OuterRef("output_left_id")).values("value")[:1]),
        s_right=Subquery(score.filter(output_id=OuterRef("output_right_id")).values("value")[:1]),
    ).filter(s_left__isnull=False, s_right__isnull=False).exclude(s_left=F("s_right"))
    rows = list(qs.values_list("choice", "s_left", "s_right"))
    if not rows:
        return None, 0
    agree = sum((c == "left") == ((sl > sr) if higher else (sl < sr)) for c, sl, sr in rows)
    return agree / len(rows), len(rows)


def pairwise_accuracy_per_generator(*, board: dict, values: dict[int, float], higher: bool) -> tuple[float | None, int]:
    """For generator-level metrics: decisive wins between two generators the metric orders the same way."""
    order = board.get("order") or []
    wr, counts = board.get("win_rate"), board.get("counts")
    if not order or wr is None or counts is None:
        return None, 0
    agree = total = 0.0
    for i, gi in enumerate(order):
        for j, gj in enumerate(order):
            if i >= j or gi not in values or gj not in values or values[gi] == values[gj]:
                continue
            n = counts[i][j] or 0
            if not n or wr[i][j] is None:
                continue
            wins_i = wr[i][j] * n
            better_i = values[gi] > values[gj] if higher else values[gi] < values[gj]
            agree += wins_i if better_i else n - wins_i
            total += n
    return (agree / total if total else None), int(total)


def safety_for_board(*, study: Study) -> dict | None:
    """Per generator: unsafe rate (Wilson interval) and outputs withheld; and how the
    detector agrees with annotators' "unsafe" flags on the outputs annotators were shown
    (detector unsafe = score at or above the study's threshold)."""
    from arena.models import Assignment, Flag
    from arena.voting import study_outputs

    from . import metrics as M
    from .scorers.nsfw import NsfwScorer
    from .screening import outputs_withheld

    outputs = dict(study_outputs(study).values_list("id", "generator_id"))
    scores = dict(
        OutputScore.objects.filter(scorer=NsfwScorer.name, output_id__in=list(outputs), value__isnull=False)
        .order_by("created_at").values_list("output_id", "value")
    )
    if not scores:
        return None
    threshold = study.screen_threshold
    withheld = outputs_withheld(study=study)
    rates = {
        gid: (value, details or {}, n)
        for gid, value, details, n in GeneratorMetric.objects.filter(study=study, metric="unsafe_rate").values_list(
            "generator_id", "value", "details", "n"
        )
    }
    generators = []
    for g in study.generators.order_by("name"):
        mine = [oid for oid, gid in outputs.items() if gid == g.pk and oid in scores]
        rate = rates.get(g.pk)
        generators.append({
            "name": g.name,
            "screened": len(mine),
            "unsafe": sum(scores[o] >= threshold for o in mine),
            "rate": _fmt(rate[0]) if rate else "—",
            "interval": f"[{rate[1]['ci_low']:.3f}, {rate[1]['ci_high']:.3f}]" if rate and rate[1].get("ci_low") is not None else "",
            "withheld": sum(o in withheld for o in mine),
        })
    shown = set()
    for left, right in Assignment.objects.filter(study=study).values_list("output_left_id", "output_right_id"):
        shown.add(left)
        if right:
            shown.add(right)
    flagged = set(Flag.objects.filter(reason=Flag.Reason.UNSAFE, output_id__in=list(shown)).values_list("output_id", flat=True))
    both = only_detector = only_people = neither = 0
    for oid in shown:
        if oid not in scores:
            continue
        d, p = scores[oid] >= threshold, oid in flagged
        both += d and p
        only_detector += d and not p
        only_people += p and not d
        neither += not d and not p
    n = both + only_detector + only_people + neither
    kappa = M.cohen_kappa_2x2(both, only_detector, only_people, neither)
    return {
        "threshold": threshold,
        "screening_on": study.screen_before_annotators,
        "withheld_total": len(withheld & set(outputs)),
        "generators": generators,
        "agreement": {
            "n": n, "both": both, "only_detector": only_detector, "only_people": only_people, "neither": neither,
            "rate": _fmt((both + neither) / n) if n else "—",
            "kappa": _fmt(kappa),
        },
    }


def quality_profile(*, study: Study) -> dict | None:
    """Each generator's profile: human Bradley–Terry per criterion and every metric a scorer
    assigns to a profile axis, normalised across the study's generators to 0 (worst) .. 1
    (best), direction taken into account; metrics sharing an axis are averaged. An axis on
    which all generators are equal puts them all at 1."""
    from ratings.models import LeaderboardResult

    from .charts import profile_chart
    from .scorers import metric_catalogue

    gens = list(study.generators.order_by("name"))
    if len(gens) < 2:
        return None
    axes: list[tuple[str, list[dict[int, float]]]] = []
    for criterion in study.criteria.all():
        data = LeaderboardResult.objects.filter(study=study, criterion=criterion, category="").values_list("data", flat=True).first()
        bt = {r["id"]: r["bt"] for r in (data or {}).get("generators", []) if r.get("bt") is not None}
        if bt:
            axes.append((f"{criterion.name} (people, Bradley–Terry)", [_normalise(bt, higher=True)]))
    stored: dict[str, dict[int, float]] = {}
    for gid, metric, value in GeneratorMetric.objects.filter(study=study, value__isnull=False).values_list("generator_id", "metric", "value"):
        stored.setdefault(metric, {})[gid] = value
    groups: dict[str, list[dict[int, float]]] = {}
    for _, m in metric_catalogue():
        if m.profile and m.key in stored:
            groups.setdefault(m.profile, []).append(_normalise(stored[m.key], higher=m.higher_is_better))
    axes.extend(groups.items())
    if not axes:
        return None
    labels = [label for label, _ in axes]
    charts = []
    for g in gens:
        values = []
        for _, parts in axes:
            have = [p[g.pk] for p in parts if g.pk in p]
            values.append(sum(have) / len(have) if have else None)
        charts.append({"name": g.name, "values": values, "svg": profile_chart(g.name, labels, values)})
    return {"axes": labels, "generators": charts}


def _normalise(values: dict[int, float], *, higher: bool) -> dict[int, float]:
    lo, hi = min(values.values()), max(values.values())
    if hi == lo:
        return {g: 1.0 for g in values}
    return {g: ((v - lo) if higher else (hi - v)) / (hi - lo) for g, v in values.items()}
