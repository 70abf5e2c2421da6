"""Where a lower app hands work over to one built on it, without importing it.

Dependencies point one way: arena <- ratings <- judging <- ops. Where arena's own flow reaches
work the apps above own (a vote committed, outputs imported, which outputs must stay hidden,
which pair to show next), or the ratings recompute and board reach what judging adds (metric
agreement, safety, question checks, judges), the lower app calls a hook named here; the owning
app registers the implementation in its ``AppConfig.ready()``. A hook nobody registered returns
the caller's default, so each app runs (and is tested) without those above it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

HOOKS = {
    "vote_committed": "after a vote commits, (study_id, criterion_id): ratings asks for the Elo update and the recompute",
    "votes_recounted": "inside the transaction that excludes an annotator or withdraws an output, (study_ids): "
                       "ratings resets the Elo and asks for it again after the commit",
    "outputs_imported": "after an import commits, (output_ids): judging queues their scoring",
    "outputs_withheld": "(study) -> ids of outputs annotators must not see (judging's safety screen)",
    "pair_pick": "(study, criterion, generators, eligible, rng) -> (i, j) or None: ratings' pair sampler",
    "study_jobs": "(study) -> the study's latest scoring jobs, for its overview page (judging)",
    # ratings -> judging: what automated scores and MLLM judges add to the people's board
    "board_additions": "(study) -> f(criterion, board, base) -> dict stored with a criterion's overall board (judging)",
    "study_recomputed": "(study): after a full recompute, figures that compare with the new fit follow (judging)",
    "board_extras": "(study, criterion, board) -> dict of stored results shown beside the board (judging)",
    "board_version": "(study, criterion) -> str appended to the board's version token (judging)",
}

_registry: dict[str, Callable[..., Any]] = {}


def register(name: str, fn: Callable[..., Any]) -> None:
    if name not in HOOKS:
        raise ValueError(f"unknown hook {name!r}; known: {', '.join(sorted(HOOKS))}")
    _registry[name] = fn


def call(name: str, *args, default: Any = None, fallback: Callable[..., Any] | None = None, **kwargs) -> Any:
    """Run the registered implementation of hook `name`; when none is registered, run `fallback`
    with the same arguments if given, else return `default`."""
    fn = _registry.get(name)
    if fn is None:
        if name not in HOOKS:
            raise ValueError(f"unknown hook {name!r}")
        return fallback(*args, **kwargs) if fallback is not None else default
    return fn(*args, **kwargs)


def call_safely(name: str, *args, **kwargs) -> None:
    """Run a hook whose failure must not undo what the caller already committed (logged instead)."""
    try:
        call(name, *args, **kwargs)
    except Exception:
        logger.exception("hook %s failed", name)
