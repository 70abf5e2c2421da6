"""The board's judges section: each judge's own ranking next to the people's, how far it agrees
with them, its position bias, failures, tokens and throughput. Written at the end of every judge
run and by every full recompute (so it follows new human votes); pages read what is stored.

Judge verdicts never enter a human number: they are read here only, from ``JudgeVote``.

What is shown of a judge: the verdicts of its current configuration (the fingerprint of its
latest finished run on the study) made up to the end of that run, so a run that failed or is
still going shows nothing partial.

Per criterion and judge:

- ranking: Bradley–Terry fitted to the judge's pairwise verdicts (the same fit as the people's,
  ``ratings.bradley_terry.fit_bt``; an inconsistent pair is a tie), with its mean rating 1-5 and
  good rate, next to the people's Bradley–Terry rating and rank;
- pairwise accuracy on the human pairwise votes: each vote's outcome (left +1, right −1, tie 0;
  "both bad" as a tie when the study counts it so) against the judge's verdict on that pair in
  the same orientation (+1, −1, 0): Deutsch et al. (2023)'s tie-calibrated accuracy
  (``ratings.stats.tie_calibration``), with a 95 % interval resampling prompts;
- Cohen's κ against the human majority per item (an output for ratings and good/bad, an
  unordered pair for pairwise); items whose human votes have no single most frequent answer are
  left out; unweighted κ, each pair counted in both orientations (so κ does not depend on which
  output is called left); 95 % interval resampling prompts;
- Spearman ρ and Kendall τ-b between the judge's Bradley–Terry (or, without pairwise verdicts, its
  mean rating) and the people's, per generator, 95 % interval resampling prompts;
- position bias: the share of decisive single-order verdicts that pick the image shown first
  (Wilson interval, binomial test against 0.5), and swap consistency, the share of pairs whose
  two orders agree (Wilson interval);
- failures (answers that could not be read), tokens, requests and verdicts per second.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
from django.db.models import Count
from django.utils import timezone

from arena.models import Output, Study, Vote, VoteKind
from arena.selectors import counted_votes
from ratings import bradley_terry as bt
from ratings import stats
from ratings.models import LeaderboardResult

from .agreement import _accuracy_with_interval
from .models import JudgeReport, JudgeRun, JudgeVote, ScoreJob

__all__ = ["TOO_FEW", "judge_reports_refresh", "judge_verdicts_shown", "judges_for_board"]

TOO_FEW = 10  # below this many compared items a figure is labelled "too few"
ROUNDS = 200
LEVEL = 0.95


def _f(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _figure(value, low=None, high=None, n=0, **extra) -> dict:
    return {"value": _f(value), "low": _f(low), "high": _f(high), "n": int(n), "too_few": int(n) < TOO_FEW, **extra}


def judge_verdicts_shown(*, study: Study) -> dict[str, tuple[JudgeRun, object]]:
    """judge name -> (its latest finished run on the study, the verdicts shown of it)."""
    out = {}
    runs = JudgeRun.objects.filter(study=study, job__status=ScoreJob.Status.DONE).select_related("job").order_by("-job__finished_at")
    for run in runs:
        if run.judge in out:
            continue
        votes = JudgeVote.objects.filter(study=study, judge=run.judge, fingerprint=run.fingerprint, created_at__lte=run.job.finished_at)
        out[run.judge] = (run, votes)
    return out


def _human_label(choice: str, both_bad_as_tie: bool) -> int | None:
    return {"left": 1, "right": -1, "tie": 0}.get(choice, 0 if both_bad_as_tie else None)


def _judge_sign(choice: str) -> int:
    return {"left": 1, "right": -1}.get(choice, 0)


def _majority(counter: Counter):
    top = counter.most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def _kappa(judge: list, human: list, prompts: list, items: int | None = None) -> dict:
    if not judge:
        return _figure(None, n=0)
    items = len(judge) if items is None else items
    k = stats.cohen_kappa(np.asarray(judge), np.asarray(human))
    low, high = stats.bootstrap_ci(stats.cohen_kappa, np.asarray(judge), np.asarray(human), clusters=np.asarray(prompts),
                                   rounds=ROUNDS, level=LEVEL, seed=0)
    agree = float(np.mean(np.asarray(judge) == np.asarray(human)))
    return _figure(k, low, high, items, agreement=agree)


def _fit(n: int, a, b, wa, wb, ties) -> np.ndarray:
    if len(a) == 0:
        return np.full(n, np.nan)
    return bt.fit_bt(n, np.asarray(a), np.asarray(b), np.asarray(wa, float), np.asarray(wb, float), np.asarray(ties, float))


def _one_judge(study: Study, criterion, run: JudgeRun, votes, human_rows: list[dict], base) -> dict:
    votes = votes.filter(criterion=criterion)
    rows = list(votes.values_list("kind", "output_id", "output_b_id", "score", "choice", "choice_first_order",
                                  "choice_second_order", "consistent", "failed", "prompt_tokens", "completion_tokens"))
    gens = {o: (g, p) for o, g, p in Output.objects.filter(
        pk__in={r[1] for r in rows} | {r[2] for r in rows if r[2]}).values_list("id", "generator_id", "prompt_id")}
    order = [r["id"] for r in human_rows]
    names = {r["id"]: r["name"] for r in human_rows}
    pos = {g: i for i, g in enumerate(order)}
    n = len(order)
    ok = [r for r in rows if not r[8]]
    pair = [r for r in ok if r[0] == "pairwise"]
    # The judge's own Bradley–Terry, per generator, from its pairwise verdicts.
    a, b, wa, wb, ties, clusters = [], [], [], [], [], []
    for _, o, ob, _, choice, *_ in pair:
        (ga, pa), (gb, _) = gens[o], gens[ob]
        if ga not in pos or gb not in pos:
            continue
        a.append(pos[ga])
        b.append(pos[gb])
        wa.append(choice == "left")
        wb.append(choice == "right")
        ties.append(choice == "tie")
        clusters.append(pa)
    judge_bt = _fit(n, a, b, wa, wb, ties)
    likert: dict[int, list[int]] = defaultdict(list)
    binary: dict[int, list[int]] = defaultdict(list)
    for kind, o, _, score, *_ in ok:
        g = gens[o][0]
        if kind == "likert":
            likert[g].append(score)
        elif kind == "binary":
            binary[g].append(score)
    ranking = []
    voted = ~np.isnan(judge_bt)
    judge_rank = {}
    if voted.any():
        # Rank: 1 + generators rated strictly higher, so equal ratings share a rank.
        rated = {order[i]: round(float(judge_bt[i]), 6) for i in range(n) if voted[i]}
        judge_rank = {g: 1 + sum(v > x for v in rated.values()) for g, x in rated.items()}
    human_bt = {r["id"]: r.get("bt") for r in human_rows}
    human_rank = {r["id"]: r.get("rank") for r in human_rows}  # the board's rank by interval
    for g in order:
        i = pos[g]
        ranking.append({
            "name": names[g], "judge_bt": _f(judge_bt[i]), "judge_rank": judge_rank.get(g),
            "judge_likert": _f(np.mean(likert[g])) if likert.get(g) else None, "judge_likert_n": len(likert.get(g, [])),
            "judge_good_rate": _f(np.mean(binary[g])) if binary.get(g) else None, "judge_binary_n": len(binary.get(g, [])),
            "human_bt": _f(human_bt.get(g)), "human_rank": human_rank.get(g),
        })
    ranking.sort(key=lambda r: (r["judge_rank"] is None, r["judge_rank"] or 0, r["name"]))

    # Correlation of the judge's per-generator figure with the people's Bradley–Terry.
    both = [g for g in order if human_bt.get(g) is not None]
    correlation = {"basis": "bradley_terry" if voted.any() else "mean_rating"}
    if voted.any():
        hb = np.array([human_bt[g] for g in both], dtype=float)
        cols = [pos[g] for g in both]
        samples = None
        if len(both) >= 3 and len(set(clusters)) >= 2:
            # One refit per round on resampled prompts, shared by both correlations.
            samples = bt.bootstrap_bt_clusters(n, clusters, a, b, wa, wb, ties, rounds=ROUNDS, seed=0)[:, cols]
        for name, fn in (("spearman", stats.spearman), ("kendall", stats.kendall_tau_b)):
            value = fn(judge_bt[cols], hb) if len(both) >= 3 else math.nan
            low = high = None
            if samples is not None:
                reps = np.array([fn(row, hb) for row in samples])
                finite = reps[np.isfinite(reps)]
                if finite.size * 2 >= ROUNDS:
                    low, high = (float(q) for q in np.quantile(finite, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
            correlation[name] = _figure(value, low, high, len(both))
            correlation[name]["too_few"] = len(both) < 3
    else:
        means = {g: np.mean(v) for g, v in likert.items()}
        xs = [g for g in both if g in means]
        for name, fn in (("spearman", stats.spearman), ("kendall", stats.kendall_tau_b)):
            value = fn([means[g] for g in xs], [human_bt[g] for g in xs]) if len(xs) >= 3 else math.nan
            correlation[name] = _figure(value, n=len(xs))
            correlation[name]["too_few"] = len(xs) < 3

    # Pairwise accuracy on the human pairwise votes.
    verdict = {(o, ob): choice for _, o, ob, _, choice, *_ in pair}
    labels, diffs, prompts, counts = [], [], [], []
    for left, right, prompt, choice, cnt in (
        base.filter(kind=VoteKind.PAIRWISE).values_list("output_left_id", "output_right_id", "output_left__prompt_id", "choice")
        .annotate(n=Count("id")).order_by()
    ):
        h = _human_label(choice, study.both_bad_as_tie)
        key = (min(left, right), max(left, right))
        if h is None or key not in verdict:
            continue
        sign = _judge_sign(verdict[key])
        labels.append(h)
        diffs.append(sign if left == key[0] else -sign)
        prompts.append(prompt)
        counts.append(cnt)
    if labels:
        acc = _accuracy_with_interval(labels, diffs, prompts, counts)
        accuracy = _figure(acc["value"], acc["low"], acc["high"], acc["n"], epsilon=acc["epsilon"])
    else:
        accuracy = _figure(None, n=0)

    # Cohen's kappa against the human majority per item.
    kappa = {}
    for kind in (VoteKind.LIKERT, VoteKind.BINARY):
        judged = {o: score for k, o, _, score, *_ in ok if k == kind}
        human: dict[int, Counter] = defaultdict(Counter)
        prompt_of = {}
        for o, p, score, cnt in base.filter(kind=kind).values_list("output_left_id", "output_left__prompt_id", "score").annotate(n=Count("id")).order_by():
            human[o][score] += cnt
            prompt_of[o] = p
        j, h, p = [], [], []
        for o, c in human.items():
            m = _majority(c)
            if m is not None and o in judged:
                j.append(judged[o])
                h.append(m)
                p.append(prompt_of[o])
        if human:
            kappa[kind.value] = _kappa(j, h, p)
    human_pairs: dict[tuple, Counter] = defaultdict(Counter)
    pair_prompt = {}
    for left, right, prompt, choice, cnt in (
        base.filter(kind=VoteKind.PAIRWISE).values_list("output_left_id", "output_right_id", "output_left__prompt_id", "choice")
        .annotate(n=Count("id")).order_by()
    ):
        h = _human_label(choice, study.both_bad_as_tie)
        if h is None:
            continue
        key = (min(left, right), max(left, right))
        human_pairs[key][h if left == key[0] else -h] += cnt
        pair_prompt[key] = prompt
    if human_pairs:
        j, h, p = [], [], []
        for key, c in human_pairs.items():
            m = _majority(c)
            if m is not None and key in verdict:
                # Both orientations of each pair, so κ does not depend on which output is called left.
                sign = _judge_sign(verdict[key])
                j += [sign, -sign]
                h += [m, -m]
                p += [pair_prompt[key]] * 2
        kappa["pairwise"] = _kappa(j, h, p, items=len(j) // 2)

    # Position bias: which image the judge picks by where it is shown.
    first_picks = decisive = consistent = 0
    for _, _, _, _, _, first_order, second_order, cons, *_ in pair:
        for chosen, first_side in ((first_order, "left"), (second_order, "right")):
            if chosen in ("left", "right"):
                decisive += 1
                first_picks += chosen == first_side
        consistent += bool(cons)
    first_rate = stats.position_bias(first_picks, decisive) if decisive else None
    cons_low, cons_high = stats.wilson_interval(consistent, len(pair)) if pair else (None, None)
    all_rows = rows
    failed = sum(1 for r in rows if r[8])
    return {
        "ranking": ranking,
        "ranked": bool(judge_rank),
        "correlation": correlation,
        "pairwise_accuracy": accuracy,
        "kappa": kappa,
        "position": {
            "first_rate": _figure(first_rate["share"], first_rate["low"], first_rate["high"], decisive,
                                  p_value=first_rate["p_value"]) if first_rate else _figure(None, n=0),
            "first_picks": first_picks, "decisive": decisive,
            "consistency": _figure(consistent / len(pair) if pair else None, cons_low, cons_high, len(pair)),
            "consistent": consistent, "inconsistent": len(pair) - consistent, "pairs": len(pair),
        },
        "verdicts": len(all_rows), "failures": failed,
        "failure_rate": _f(failed / len(all_rows)) if all_rows else None,
        "prompt_tokens": int(sum(r[9] for r in all_rows)), "completion_tokens": int(sum(r[10] for r in all_rows)),
    }


def _throughput(study: Study, judge: str, fingerprint: str) -> dict:
    runs = list(JudgeRun.objects.filter(study=study, judge=judge, fingerprint=fingerprint).select_related("job"))
    verdicts = sum(r.verdicts for r in runs)
    wall = sum((r.job.finished_at - r.job.started_at).total_seconds() for r in runs
               if r.job.finished_at and r.job.started_at and r.job.status == ScoreJob.Status.DONE)
    return {
        "runs": len(runs), "requests": sum(r.requests for r in runs),
        "verdicts_per_second": _f(verdicts / wall) if wall > 0 and verdicts else None,
        "seconds_waiting": sum(r.seconds for r in runs),
    }


def judge_reports_compute(*, study: Study, criterion, human_rows: list[dict], base) -> dict:
    judges = []
    for name, (run, votes) in sorted(judge_verdicts_shown(study=study).items()):
        entry = {"name": name, "model": run.config.get("model", ""), "backend": run.config.get("backend", ""),
                 "fingerprint": run.fingerprint, "finished_at": run.job.finished_at.isoformat(),
                 "sample": run.sample, **_throughput(study, name, run.fingerprint)}
        entry.update(_one_judge(study, criterion, run, votes, human_rows, base))
        entry["questions"] = votes.filter(kind="question").aggregate(n=Count("id"))["n"]
        judges.append(entry)
    return {"judges": judges, "too_few": TOO_FEW, "human_ranked": any(r.get("bt") is not None for r in human_rows)}


def judge_reports_refresh(*, study: Study) -> int:
    """Recompute and store the judges section of every criterion of the study; returns how many."""
    if not JudgeRun.objects.filter(study=study).exists():
        JudgeReport.objects.filter(study=study).delete()
        return 0
    now = timezone.now()
    done = 0
    for criterion in study.criteria.all():
        board = LeaderboardResult.objects.filter(study=study, criterion=criterion, category="").values_list("data", flat=True).first()
        human_rows = [{"id": r["id"], "name": r["name"], "bt": r.get("bt"), "rank": r.get("rank")}
                      for r in (board or {}).get("generators", [])]
        if not human_rows:
            human_rows = [{"id": g.pk, "name": g.name, "bt": None} for g in study.generators.order_by("name")]
        base = counted_votes(Vote.objects.filter(study=study, criterion=criterion, is_gold=False, annotator__excluded=False), study=study)
        data = judge_reports_compute(study=study, criterion=criterion, human_rows=human_rows, base=base)
        JudgeReport.objects.update_or_create(study=study, criterion=criterion, defaults={"computed_at": now, "data": data})
        done += 1
    return done


def _text(fig: dict) -> dict:
    """A stored figure with its text: "0.712 [0.52, 0.84]", or "—"."""
    if fig.get("value") is None:
        return {**fig, "text": "—"}
    text = f"{fig['value']:.3f}"
    if fig.get("low") is not None and fig.get("high") is not None:
        text += f" [{fig['low']:.2f}, {fig['high']:.2f}]"
    return {**fig, "text": text}


def judges_for_board(*, study: Study, criterion) -> dict | None:
    """The stored judges section of a criterion, figures with their text (None before any
    finished judge run)."""
    row = JudgeReport.objects.filter(study=study, criterion=criterion).values_list("data", "computed_at").first()
    if row is None or not row[0].get("judges"):
        return None
    data = row[0]
    for j in data["judges"]:
        j["pairwise_accuracy"] = _text(j["pairwise_accuracy"])
        j["kappa"] = {k: _text(v) for k, v in j["kappa"].items()}
        for k in ("spearman", "kendall"):
            if k in j["correlation"]:
                j["correlation"][k] = _text(j["correlation"][k])
        for k in ("first_rate", "consistency"):
            j["position"][k] = _text(j["position"][k])
    return {**data, "computed_at": row[1].isoformat(), "computed_text": f"{row[1]:%Y-%m-%d %H:%M:%S} UTC"}
