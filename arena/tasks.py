from celery import shared_task

from . import services
from .models import Study
from .renditions import renditions_make_for_study


@shared_task(name="arena.upload_import", acks_late=True)
def upload_import_task(upload_id: int) -> None:
    services.upload_run(upload_id=upload_id)


@shared_task(name="arena.study_renditions", acks_late=True)
def study_renditions_task(study_id: int) -> None:
    study = Study.objects.filter(pk=study_id).first()
    if study is not None:
        renditions_make_for_study(study=study)
