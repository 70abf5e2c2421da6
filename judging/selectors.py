"""Automated metrics next to the human board, and how well each agrees with people."""

from __future__ import annotations

import math

from arena.charts import scatter
from arena.models import Assignment, Flag, Study
from arena.selectors import study_outputs
from ratings.models import LeaderboardResult

from . import metrics as M
from .charts import profile_chart
from .judge_report import judge_verdicts_shown
from .models import GeneratorMetric, JudgeVote, OutputScore
from .scorers import metric_catalogue
from .scorers.nsfw import NsfwScorer
from .screening import outputs_withheld

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
    # Agreement with people is computed by the full recompute and stored with the board.
    stored_agreement = {a["metric"]: a for a in (board or {}).get("metric_agreement", [])}
    agreement, scatters = [], []

    has_votes = bool(board and board.get("generators"))
    for cls, m in declared:
        if not has_votes:
            break
        a = stored_agreement.get(m.key)
        if a is not None:
            agreement.append({"metric": m.key, "label": m.label, "formula": m.formula,
                              "per_generator": _figures(a.get("per_generator", {})),
                              "per_output": {k: _figures(v) if "value" not in v else _figure(v)
                                             for k, v in a.get("per_output", {}).items()}})
        # One scatter per scorer (its headline metric) keeps the page short.
        pts = [(r["name"], values[m.key].get(r["id"]), r.get("bt")) for r in rows]
        pts = [(n, v, b) for n, v, b in pts if v is not None and b is not None]
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


def _figure(f: dict | None) -> dict:
    """A stored figure {value, low, high, n} as text: "0.71 [0.52, 0.84]"."""
    if not f or f.get("value") is None:
        return {"text": "—", "n": (f or {}).get("n")}
    text = _fmt(f["value"])
    if f.get("low") is not None and f.get("high") is not None:
        text += f" [{f['low']:.2f}, {f['high']:.2f}]"
    return {"text": text, "n": f.get("n"), "value": f["value"]}


def _figures(block: dict) -> dict:
    out = {k: _figure(v) for k, v in block.items() if isinstance(v, dict)}
    out["n"] = block.get("n")
    return out


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


def safety_for_board(*, study: Study) -> dict | None:
    """Per generator: unsafe rate (Wilson interval) and outputs withheld; and how the
    detector agrees with annotators' "unsafe" flags on the outputs annotators were shown
    (detector unsafe = score at or above the study's threshold)."""
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


def judge_question_answers(*, study: Study) -> list[tuple[str, int, int, bool]]:
    """(judge name, output id, question index, answered yes) of every readable yes/no question
    verdict shown of each judge on the study (its current configuration, up to its latest
    finished run: see ``judge_report.judge_verdicts_shown``); failed answers are left out."""
    out = []
    for judge, (_, votes) in sorted(judge_verdicts_shown(study=study).items()):
        rows = votes.filter(kind=JudgeVote.Kind.QUESTION, failed=False).order_by("output_id", "question_index")
        out += [(judge, oid, q, score == 1) for oid, q, score in rows.values_list("output_id", "question_index", "score")]
    return out
