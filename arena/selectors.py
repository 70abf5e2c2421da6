"""Reads about studies that pages and the serving code share."""

from __future__ import annotations

from . import rawsql
from .models import Output, Study, WithdrawnOutput


def study_outputs(study: Study):
    """The outputs a study draws from: its generators' outputs for its prompts (or prompt categories)."""
    qs = Output.objects.filter(generator__in=study.generators.all())
    if study.categories:
        qs = qs.filter(prompt__category__in=study.categories)
    elif study.prompts.exists():
        qs = qs.filter(prompt__in=study.prompts.all())
    return qs


def study_by_slug(slug: str) -> Study | None:
    """The study with this slug (what every voting request reads first), without compiling a query."""
    with rawsql.cursor() as cursor:
        cursor.execute(f"SELECT {rawsql.columns(Study, 's')} FROM arena_study s WHERE s.slug = %s", [slug])
        row = cursor.fetchone()
    return rawsql.instance(Study, row) if row is not None else None


def withdrawn_output_ids(study: Study | int) -> frozenset[int]:
    """Ids of the outputs staff withdrew from a study (never served again, left out of every number)."""
    study_id = study if isinstance(study, int) else study.pk
    return frozenset(WithdrawnOutput.objects.filter(study_id=study_id).values_list("output_id", flat=True))


def counted_votes(votes, *, study: Study | int):
    """`votes` without those on an output withdrawn from the study (one SQL subquery, no ids in Python)."""
    study_id = study if isinstance(study, int) else study.pk
    withdrawn = WithdrawnOutput.objects.filter(study_id=study_id).values("output_id")
    return votes.exclude(output_left_id__in=withdrawn).exclude(output_right_id__in=withdrawn)
