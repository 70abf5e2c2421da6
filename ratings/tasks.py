"""Celery entry points of the ratings app (queue "default"). They take ids and are idempotent:
a duplicate or redelivered message finds nothing left to do."""

from celery import shared_task

from . import services


@shared_task(name="ratings.elo_apply", acks_late=True)
def elo_apply_task(study_id: int, criterion_id: int) -> int:
    return services.elo_apply(study_id=study_id, criterion_id=criterion_id)


@shared_task(name="ratings.elo_rebuild", acks_late=True)
def elo_rebuild_task(study_id: int) -> None:
    services.elo_rebuild(study_id=study_id)


@shared_task(name="ratings.recompute", acks_late=True)
def recompute_task(study_id: int) -> bool:
    return services.study_recompute(study_id=study_id)
