"""Reads of stored rating results for pages, the API and the sampler. Nothing is computed here."""

from __future__ import annotations


import numpy as np

from django.http import Http404

from arena import hooks, roles
from arena.models import Criterion, Study
from arena.ttl_cache import TTLCache

from .models import EloState, LeaderboardResult, RecomputeState
from . import sampling
from .sampling import SamplerState


def leaderboard_get(*, study: Study, criterion: Criterion, category: str = "") -> dict | None:
    """The stored board, with the live online Elo merged in."""
    result = LeaderboardResult.objects.filter(study=study, criterion=criterion, category=category).first()
    elo = EloState.objects.filter(study=study, criterion=criterion).first()
    elo_map = {int(k): v for k, v in (elo.ratings if elo else {}).items()}
    if result is None and not elo_map:
        return None
    data = dict(result.data) if result else {"generators": [], "totals": {}, "votes_total": 0}
    rows = []
    for row in data.get("generators", []):
        row = dict(row)
        if category == "":
            r = elo_map.get(row["id"])
            row["elo"] = r[0] if r else None
            row["elo_votes"] = r[1] if r else 0
        else:
            row["elo"], row["elo_votes"] = None, 0
        rows.append(row)
    data["generators"] = rows
    state = RecomputeState.objects.filter(study=study).first()
    data["computed_at"] = result.computed_at.isoformat() if result else None
    data["elo_updated_at"] = elo.updated_at.isoformat() if elo else None
    data["elo_votes_applied"] = elo.votes_applied if elo else 0
    data["elo_requested_at"] = elo.requested_at.isoformat() if elo and elo.requested_at else None
    data["recompute"] = {
        "running": bool(state and state.running),
        "requested": bool(state and state.requested_at),
        "requested_at": state.requested_at.isoformat() if state and state.requested_at else None,
        "finished_at": state.finished_at.isoformat() if state and state.finished_at else None,
        "last_duration_ms": state.last_duration_ms if state else None,
        "last_error": state.last_error if state else "",
    }
    data["study"] = study.slug
    data["criterion"] = criterion.slug
    data["category"] = category
    data["sampler"] = study.sampler
    return data


def board_version_get(*, study: Study, criterion: Criterion, category: str = "") -> str:
    """A short token that changes whenever what the board shows changes (fit, live Elo, recompute state)."""
    computed = (
        LeaderboardResult.objects.filter(study=study, criterion=criterion, category=category)
        .values_list("computed_at", flat=True).first()
    )
    elo = EloState.objects.filter(study=study, criterion=criterion).values_list("votes_applied", flat=True).first()
    state = RecomputeState.objects.filter(study=study).values_list("running", "requested_at").first()
    stamp = computed.timestamp() if computed else 0
    version = f"{stamp:.6f}-{elo or 0}-{int(bool(state and state[0]))}{int(bool(state and state[1]))}"
    return version + hooks.call("board_version", study=study, criterion=criterion, default="")  # e.g. a finished judge run


def categories_get(*, study: Study, criterion: Criterion) -> list[str]:
    return list(
        LeaderboardResult.objects.filter(study=study, criterion=criterion).exclude(category="").order_by("category").values_list("category", flat=True)
    )


SAMPLER_CACHE = TTLCache(ttl=2.0, maxsize=256)


def sampler_inputs_get(*, study: Study, criterion: Criterion, generators: list[int]) -> SamplerState:
    """The sampler's state from the latest stored fit, mapped to the given generator order.

    Cached for a moment per process so that serving a task costs no extra query.
    """
    key = (study.pk, criterion.pk, tuple(generators))
    return SAMPLER_CACHE.get_or_set(key, lambda: _sampler_inputs(study, criterion, generators))


def _sampler_inputs(study: Study, criterion: Criterion, generators: list[int]) -> SamplerState:
    n = len(generators)
    counts = np.zeros((n, n))
    ratings = stderr = None
    data = (
        LeaderboardResult.objects.filter(study=study, criterion=criterion, category="").values_list("data", flat=True).first()
    )
    if data and data.get("order"):
        # Generators added since the last fit get no rating and no counts: the sampler places them first.
        pos = {gid: i for i, gid in enumerate(data["order"])}
        known = [k for k, g in enumerate(generators) if g in pos]
        src = [pos[generators[k]] for k in known]
        c = np.asarray(data["counts"], dtype=float)
        counts[np.ix_(known, known)] = c[np.ix_(src, src)]
        by_id = {row["id"]: row for row in data["generators"]}
        se = data.get("stderr") or [None] * len(data["order"])
        ratings = np.full(n, np.nan)
        stderr = np.full(n, np.nan)
        for k in known:
            g = generators[k]
            if by_id.get(g, {}).get("bt") is not None:
                ratings[k] = by_id[g]["bt"]
            if se[pos[g]] is not None:
                stderr[k] = se[pos[g]]
    return SamplerState(n=n, counts=counts, ratings=ratings, stderr=stderr)


def pair_pick(*, study: Study, criterion: Criterion, generators: list[int], eligible, rng) -> tuple[int, int] | None:
    """Hook for the voting code: the study's sampler picks the next pair (indices into
    `generators`, among the `eligible` mask) from the latest stored fit; None when no pair is left."""
    state = sampler_inputs_get(study=study, criterion=criterion, generators=generators)
    try:
        return sampling.pick_pair(study.sampler, state, rng, eligible=eligible)
    except sampling.NoPairAvailable:
        return None


def board_visible_to(user, study: Study) -> bool:
    """Who may read a study's board: anyone when it is public, else researchers and staff."""
    return study.public_leaderboard or roles.is_researcher(user)


def criterion_of(study: Study, slug: str | None) -> tuple[Criterion, list[Criterion]]:
    """The study's criterion named by `slug` (its first when none is given), and all of them;
    Http404 when the study has none or none by that name."""
    criteria = list(study.criteria.all())
    if not criteria:
        raise Http404("This study has no criteria.")
    if slug:
        for c in criteria:
            if c.slug == slug:
                return c, criteria
        raise Http404(f"No criterion {slug!r} in this study.")
    return criteria[0], criteria
