"""How far each automated metric agrees with people, computed once by the full recompute and stored
with the board (pages and the API only read it).

Per generator: Pearson, Spearman and Kendall τ-b between the metric and the Bradley–Terry
rating, and pairwise accuracy on the human pairwise votes between generators. Per output: the
same correlations between the metric and the mean 1–5 rating people gave that output, and
pairwise accuracy on the human pairwise votes between outputs. Pairwise accuracy is always
Deutsch et al. (2023)'s tie-calibrated accuracy (`ratings.stats.tie_calibration`, human ties
kept). Every figure has a 95 % percentile bootstrap interval that resamples prompts (for the
per-generator correlations, the Bradley–Terry refit and the metric means use the same resampled
prompts; for pairwise accuracy, the tie threshold is calibrated once on all votes).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from django.db.models import Avg, Count

from arena.models import Study, Vote, VoteKind
from ratings import bradley_terry as bt
from ratings import stats

from .models import GeneratorMetric, OutputScore
from .scorers import metric_catalogue

ROUNDS = 200
LEVEL = 0.95


def _signed(values, higher: bool):
    return np.asarray(values, dtype=np.float64) * (1.0 if higher else -1.0)


def _correlations(x, y) -> dict:
    return {"pearson": stats.pearson(x, y), "spearman": stats.spearman(x, y), "kendall": stats.kendall_tau_b(x, y)}


def _accuracy_with_interval(human, diff, clusters, counts) -> dict:
    """Tie-calibrated pairwise accuracy of aggregated vote cells (each `counts` votes with one
    human label and metric difference), and a 95 % interval that resamples clusters (prompts).

    The tie threshold is calibrated once on all the votes; each bootstrap round then re-weights
    the clusters' correct and total counts (so a million votes cost a few matrix products, not
    a re-sort per round). The interval leaves out the threshold's own sampling variation.
    """
    human, diff, counts = np.asarray(human), np.asarray(diff, dtype=np.float64), np.asarray(counts, dtype=np.int64)
    acc, eps = stats.tie_calibration(np.repeat(human, counts), np.repeat(diff, counts))
    predicted = np.where(np.abs(diff) <= eps, 0, np.sign(diff))
    correct = (predicted == human) * counts
    labels, k = np.unique(np.asarray(clusters), return_inverse=True)
    right = np.bincount(k, weights=correct, minlength=labels.size)
    total = np.bincount(k, weights=counts, minlength=labels.size)
    low = high = None
    if labels.size >= 2:
        rng = np.random.default_rng(0)
        w = rng.multinomial(labels.size, np.full(labels.size, 1.0 / labels.size), size=ROUNDS).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (w @ right) / (w @ total)
        reps = reps[np.isfinite(reps)]
        if reps.size * 2 >= ROUNDS:
            low, high = (float(x) for x in np.quantile(reps, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    return {"value": acc, "low": low, "high": high, "n": int(counts.sum()), "epsilon": eps}


def _human_label(choice: str, both_bad_as_tie: bool) -> int | None:
    return {"left": 1, "right": -1, "tie": 0}.get(choice, 0 if both_bad_as_tie else None)


def _per_output(study: Study, criterion, base, cls, higher: bool) -> dict:
    """Per-output correlations with the mean rating, and pairwise accuracy on pairwise votes."""
    scores = dict(
        OutputScore.objects.filter(scorer=cls.name, value__isnull=False, output__in=base.values("output_left_id"))
        .values_list("output_id", "value")
    )
    scores.update(
        OutputScore.objects.filter(scorer=cls.name, value__isnull=False, output__in=base.values("output_right_id"))
        .values_list("output_id", "value")
    )
    out: dict = {}
    rated = list(
        base.filter(kind=VoteKind.LIKERT).values_list("output_left_id", "output_left__prompt_id")
        .annotate(mean=Avg("score"), n=Count("id")).order_by()
    )
    rated = [(o, p, m) for o, p, m, _ in rated if o in scores]
    if len(rated) >= 3:
        metric = _signed([scores[o] for o, _, _ in rated], higher)
        human = np.array([m for _, _, m in rated], dtype=np.float64)
        prompts = np.array([p for _, p, _ in rated])
        corr = _correlations(metric, human)
        for name, fn in (("pearson", stats.pearson), ("spearman", stats.spearman), ("kendall", stats.kendall_tau_b)):
            low, high = stats.bootstrap_ci(fn, metric, human, clusters=prompts, rounds=ROUNDS, level=LEVEL, seed=0)
            corr[name] = {"value": corr[name], "low": low, "high": high}
        out["rating"] = {**corr, "n": len(rated)}
    pairs = list(
        base.filter(kind=VoteKind.PAIRWISE)
        .values_list("output_left_id", "output_right_id", "output_left__prompt_id", "choice")
        .annotate(n=Count("id")).order_by()
    )
    labels, diffs, prompts, counts = [], [], [], []
    for left, right, prompt, choice, n in pairs:
        label = _human_label(choice, study.both_bad_as_tie)
        if label is None or left not in scores or right not in scores:
            continue
        labels.append(label)
        diffs.append(scores[left] - scores[right])
        prompts.append(prompt)
        counts.append(n)
    if labels:
        out["pairwise_accuracy"] = _accuracy_with_interval(labels, _signed(diffs, higher), prompts, counts)
    return out


def _per_generator(study: Study, base, board: dict, metric, cls, values: dict[int, float]) -> dict:
    """Correlations with Bradley–Terry and pairwise accuracy between generators, with intervals
    that resample prompts (the BT refit and the metric means on the same resampled prompts)."""
    rows = [r for r in board.get("generators", []) if r.get("bt") is not None and r["id"] in values]
    out: dict = {"n": len(rows)}
    higher = metric.higher_is_better
    if len(rows) >= 3:
        m = _signed([values[r["id"]] for r in rows], higher)
        b = np.array([r["bt"] for r in rows])
        out.update({k: {"value": v, "low": None, "high": None} for k, v in _correlations(m, b).items()})
    # Pairwise accuracy between generators: every human pairwise vote between two generators the
    # metric scores, labelled as the vote went, against the metric's difference of the two.
    order = board.get("order") or []
    pos = {gid: i for i, gid in enumerate(order)}
    cells = list(
        base.filter(kind=VoteKind.PAIRWISE).values_list(
            "output_left__prompt_id", "generator_left_id", "generator_right_id", "choice"
        ).annotate(n=Count("id")).order_by()
    )
    labels, diffs, weights_n, prompts = [], [], [], []
    for prompt, gl, gr, choice, n in cells:
        label = _human_label(choice, study.both_bad_as_tie)
        if label is None or gl not in values or gr not in values:
            continue
        labels.append(label)
        diffs.append(values[gl] - values[gr])
        weights_n.append(n)
        prompts.append(prompt)
    if labels:
        out["pairwise_accuracy"] = _accuracy_with_interval(labels, _signed(diffs, higher), prompts, weights_n)
    # Intervals for the correlations: resample prompts; refit BT and re-average the metric on them.
    if len(rows) >= 3 and metric.per_output and cls.measures and metric.per_output == cls.measures[0].name and cells and pos:
        _generator_intervals(out, base, rows, cls, higher, pos, len(order), cells)
    return out


def _generator_intervals(out, base, rows, cls, higher, pos, n_gen, cells) -> None:
    scored = list(
        OutputScore.objects.filter(scorer=cls.name, value__isnull=False, output__generator_id__in=[r["id"] for r in rows])
        .values_list("output__generator_id", "output__prompt_id", "value")
    )
    prompts = sorted({p for p, *_ in cells} | {p for _, p, _ in scored})
    if len(prompts) < 2:
        return
    k = len(prompts)
    pidx = {p: i for i, p in enumerate(prompts)}
    gids = [r["id"] for r in rows]
    gi = {g: i for i, g in enumerate(gids)}
    sums = np.zeros((len(gids), k))
    counts = np.zeros((len(gids), k))
    for g, p, v in scored:
        sums[gi[g], pidx[p]] += v
        counts[gi[g], pidx[p]] += 1
    rng = np.random.default_rng(0)
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=ROUNDS).astype(np.float64)
    clusters, a, b, wa, wb, ties = [], [], [], [], [], []
    for prompt, gl, gr, choice, n in cells:
        if gl not in pos or gr not in pos:
            continue
        clusters.append(prompt)
        a.append(pos[gl])
        b.append(pos[gr])
        wa.append(n if choice == "left" else 0)
        wb.append(n if choice == "right" else 0)
        ties.append(n if choice in ("tie", "bothbad") else 0)
    # The BT bootstrap needs its clusters in numpy.unique order: give it the weights of those.
    labels = np.unique(np.array(clusters))
    samples = bt.bootstrap_bt_clusters(n_gen, clusters, a, b, wa, wb, ties, weights=weights[:, [pidx[p] for p in labels]])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ sums.T) / (weights @ counts.T)  # rounds × generators
    bt_rows = samples[:, [pos[g] for g in gids]]
    for name, fn in (("pearson", stats.pearson), ("spearman", stats.spearman), ("kendall", stats.kendall_tau_b)):
        reps = np.array([fn(_signed(means[r], higher), bt_rows[r]) for r in range(ROUNDS)])
        finite = reps[np.isfinite(reps)]
        if finite.size * 2 >= ROUNDS and name in out:
            low, high = np.quantile(finite, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
            out[name]["low"], out[name]["high"] = float(low), float(high)


def metric_agreement_compute(*, study: Study, criterion, board: dict, base=None) -> list[dict]:
    """Agreement of every stored metric with the people of one criterion (see the module doc)."""
    if base is None:
        base = Vote.objects.filter(study=study, criterion=criterion, is_gold=False, annotator__excluded=False)
    stored: dict[str, dict[int, float]] = defaultdict(dict)
    for gid, metric, value in GeneratorMetric.objects.filter(study=study, value__isnull=False).order_by("computed_at").values_list(
        "generator_id", "metric", "value"
    ):
        stored[metric][gid] = value
    result = []
    for cls, m in metric_catalogue():
        if m.key not in stored:
            continue
        entry = {"metric": m.key, "label": m.label, "formula": m.formula,
                 "per_generator": _per_generator(study, base, board, m, cls, stored[m.key])}
        if m.per_output and cls.measures and m.per_output == cls.measures[0].name:
            entry["per_output"] = _per_output(study, criterion, base, cls, cls.measures[0].higher_is_better)
        result.append(entry)
    return result
