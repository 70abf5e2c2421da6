"""Safety screening: which outputs are kept away from a study's annotators.

An output is withheld from a study with ``screen_before_annotators`` on when the safety
scorer's unsafe score is at or above the study's ``screen_threshold``, or, while the safety
scorer is configured (``ARENA_SCORERS``), when it has not been screened yet; in both cases
until a staff member releases it (``ScreeningRelease``, from the admin's safety-screen
review). Reads stored scores only; no model is loaded here.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from arena.models import Output, Study
from arena.selectors import study_outputs

from .models import OutputScore, ScreeningRelease
from .scorers.nsfw import NsfwScorer

__all__ = ["outputs_withheld", "outputs_release"]


def outputs_withheld(*, study: Study) -> set[int]:
    """Ids of outputs the safety screen keeps from this study's annotators."""
    if not study.screen_before_annotators:
        return set()
    withheld = set(
        OutputScore.objects.filter(scorer=NsfwScorer.name, value__gte=study.screen_threshold)
        .filter(output__screening_release__isnull=True)
        .values_list("output_id", flat=True)
    )
    if NsfwScorer.name in settings.ARENA_SCORERS:
        withheld |= set(
            study_outputs(study)
            .filter(screening_release__isnull=True)
            .exclude(scores__scorer=NsfwScorer.name)
            .values_list("id", flat=True)
        )
    return withheld


def outputs_release(*, output_ids: list[int], user=None) -> int:
    """Release withheld outputs to annotators; returns how many were newly released."""
    with transaction.atomic():
        existing = set(ScreeningRelease.objects.filter(output_id__in=output_ids).values_list("output_id", flat=True))
        new = [ScreeningRelease(output_id=oid, released_by=user) for oid in Output.objects.filter(pk__in=output_ids).values_list("pk", flat=True) if oid not in existing]
        ScreeningRelease.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)
