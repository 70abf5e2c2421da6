"""Reads about studies that pages and the serving code share."""

from __future__ import annotations

import copy

from . import rawsql
from .ttl_cache import TTLCache
from .models import Output, Study, WithdrawnOutput


def study_outputs(study: Study):
    """The outputs a study draws from: its generators' outputs for its prompts (or prompt categories)."""
    qs = Output.objects.filter(generator__in=study.generators.all())
    if study.categories:
        qs = qs.filter(prompt__category__in=study.categories)
    elif study.prompts.exists():
        qs = qs.filter(prompt__in=study.prompts.all())
    return qs


# Study rows by slug, as voting requests read them first. A study saved in this process is read
# afresh at once, one saved elsewhere within the TTL; a vote reads its study again, in its own
# transaction, before it counts (open, quota).
STUDY_ROWS = TTLCache(ttl=2.0, maxsize=1024)


def study_by_slug(slug: str) -> Study | None:
    """The study with this slug (what every voting request reads first): a fresh instance, from
    a row read at most a couple of seconds ago."""
    row = STUDY_ROWS.get(slug)
    if row is None:
        with rawsql.cursor() as cursor:
            cursor.execute(f"SELECT {rawsql.columns(Study, 's')} FROM arena_study s WHERE s.slug = %s", [slug])
            row = cursor.fetchone()
        if row is None:
            return None  # not remembered: a study created a moment later is found at once
        STUDY_ROWS.set(slug, row)
    # JSON columns come as lists and dicts: each instance gets its own.
    return rawsql.instance(Study, [copy.deepcopy(v) if isinstance(v, (list, dict)) else v for v in row])


def study_rows_forget(**_) -> None:
    """Receiver for a Study saved or deleted: this process reads study rows afresh."""
    STUDY_ROWS.clear()


def withdrawn_output_ids(study: Study | int) -> frozenset[int]:
    """Ids of the outputs staff withdrew from a study (never served again, left out of every number)."""
    study_id = study if isinstance(study, int) else study.pk
    return frozenset(WithdrawnOutput.objects.filter(study_id=study_id).values_list("output_id", flat=True))


def counted_votes(votes, *, study: Study | int):
    """`votes` without those on an output withdrawn from the study (one SQL subquery, no ids in Python)."""
    study_id = study if isinstance(study, int) else study.pk
    withdrawn = WithdrawnOutput.objects.filter(study_id=study_id).values("output_id")
    return votes.exclude(output_left_id__in=withdrawn).exclude(output_right_id__in=withdrawn)
