import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arenasite.settings")

app = Celery("arenasite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


_keeper_wake = None  # set by Keeper: wakes its thread at once


class Keeper(bootsteps.StartStopStep):
    """A thread in every worker: every ARENA_SWEEP_SECONDS it records that the worker is alive
    and, in workers that serve the default queue, sweeps for derived work that is owed and has
    no message or live run (ops.services.derivations_sweep). It needs no extra process and keeps
    working while the broker is down (what it cannot queue then, it queues on a later beat)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        self.thread = None
        self.stop_event = None

    def start(self, worker):
        import logging
        import threading

        from django.conf import settings
        from django.db import close_old_connections, connection
        from django.utils import timezone

        from ops.services import worker_tick

        queues = sorted(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)
        sweep = settings.CELERY_TASK_DEFAULT_QUEUE in queues
        started_at, pid, hostname = timezone.now(), os.getpid(), worker.hostname
        global _keeper_wake
        self.stop_event = stop = threading.Event()
        _keeper_wake = wake = threading.Event()
        log = logging.getLogger("arenasite.keeper")

        def run():
            while not stop.is_set():
                reconnected = wake.is_set()
                wake.clear()
                try:
                    close_old_connections()
                    worker_tick(
                        hostname=hostname, queues=queues, pid=pid, started_at=started_at, sweep=sweep,
                        broker_reconnected=reconnected,
                    )
                except Exception:
                    log.exception("worker keeper beat failed")
                wake.wait(settings.ARENA_SWEEP_SECONDS)
            connection.close()

        self.thread = threading.Thread(target=run, name="arena-keeper", daemon=True)
        self.thread.start()

    def stop(self, worker):
        if self.stop_event is not None:
            self.stop_event.set()
            _keeper_wake.set()
            self.thread.join(timeout=5)


class BrokerConnected(bootsteps.StartStopStep):
    """Consumer step, started each time the worker (re)connects to the broker. Messages published
    before may be gone (a restarted Redis keeps nothing), so the keeper forgets that they were
    sent and sweeps at once instead of waiting out the stale bound."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer):
        if _keeper_wake is not None:
            _keeper_wake.set()


app.steps["worker"].add(Keeper)
app.steps["consumer"].add(BrokerConnected)
