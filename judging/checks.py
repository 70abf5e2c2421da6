"""System checks: a judge setting that cannot be used stops `manage.py check`, runserver and
migrate at start, naming the setting, instead of failing the first run (a run still refuses it
with the same message)."""

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from .judge_conf import judges_configured


@register()
def judge_settings_check(app_configs, **kwargs):
    try:
        judges_configured()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="judging.E001")]
    return []
