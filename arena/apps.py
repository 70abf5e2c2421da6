from django.apps import AppConfig


class ArenaConfig(AppConfig):
    name = "arena"
    verbose_name = "Arena"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from .models import Study
        from .selectors import study_rows_forget

        post_save.connect(study_rows_forget, sender=Study, dispatch_uid="arena-study-rows-saved")
        post_delete.connect(study_rows_forget, sender=Study, dispatch_uid="arena-study-rows-deleted")
