"""What the operations side stores: which workers are alive."""

from django.db import models


class WorkerBeat(models.Model):
    """A Celery worker's last sign of life, written by the worker itself every sweep interval."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    last_sweep_at = models.DateTimeField(null=True, blank=True)
    last_sweep_sent = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.hostname} (seen {self.seen_at:%H:%M:%S})"
