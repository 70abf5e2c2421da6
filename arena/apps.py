from django.apps import AppConfig


class ArenaConfig(AppConfig):
    name = "arena"
    verbose_name = "Arena"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        from .authentication import token_rows_forget
        from .models import Study
        from .selectors import study_rows_forget

        # Rows remembered for a few seconds are read afresh once this process changes them.
        for model, forget in ((Study, study_rows_forget), (Token, token_rows_forget), (get_user_model(), token_rows_forget)):
            post_save.connect(forget, sender=model, dispatch_uid=f"arena-forget-saved-{model._meta.label}")
            post_delete.connect(forget, sender=model, dispatch_uid=f"arena-forget-deleted-{model._meta.label}")
