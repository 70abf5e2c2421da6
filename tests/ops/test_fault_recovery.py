"""Faults under load: votes over HTTP from concurrent annotators while the Celery worker is
killed (-9) and restarted and Redis is stopped and restarted. Every answered vote is stored
once, and the boards catch up on their own: the online Elo equals an independent replay and the
full board equals a fresh recompute, within a minute of the last fault.

Nothing here reads the leaderboard over HTTP while waiting (a page view also catches up), so
what brings the boards back after the faults is the workers' own sweep.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import need

pytestmark = pytest.mark.e2e

BASE = Path(__file__).resolve().parents[2]
ANNOTATORS = 6
STALE_SECONDS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private redis-server without persistence: a restart loses every queued message."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_ping(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Worker:
    """A real `celery worker` (solo pool) on private queues, reading the test database."""

    def __init__(self, *, broker: str, db_url: str, media_root: Path, queue: str, log_path: Path):
        self.env = dict(os.environ)
        self.env.update(
            DATABASE_URL=db_url, CELERY_BROKER_URL=broker, MEDIA_ROOT=str(media_root), DEBUG="1",
            DJANGO_SETTINGS_MODULE="arenasite.settings", ARENA_DEFAULT_QUEUE=queue, ARENA_GPU_QUEUE=queue + "-gpu",
            ARENA_RECOMPUTE_DEBOUNCE_SECONDS="1", ARENA_BOOTSTRAP_ROUNDS="50", ARENA_SWEEP_SECONDS="1",
            ARENA_DERIVATION_STALE_SECONDS=str(STALE_SECONDS),
        )
        self.queue = queue
        self.log_path = log_path
        self.proc = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "a")
        mark = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "arenasite", "worker", "-Q", self.queue, "-P", "solo",
             "-n", f"fault-{self.starts}-{self.queue}@%h", "-l", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=BASE, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while "ready." not in self.log_path.read_text()[mark:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("Celery worker did not start:\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.1)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Annotator(threading.Thread):
    """Votes through the API as fast as the server answers, recording every answered vote."""

    def __init__(self, *, base_url: str, token: str, slug: str, stop: threading.Event, seed: int):
        super().__init__(daemon=True)
        u = urlparse(base_url)
        self.host, self.port = u.hostname, u.port
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.slug, self.stop, self.rng = slug, stop, random.Random(seed)
        self.answered: list[str] = []  # assignment ids of 2xx votes
        self.statuses: Counter = Counter()

    def call(self, method: str, path: str, body: dict | None = None):
        conn = HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
            res = conn.getresponse()
            return res.status, res.read()
        finally:
            conn.close()

    def run(self) -> None:
        status, raw = self.call("GET", f"/api/studies/{self.slug}/next-task/")
        task = json.loads(raw)["task"] if status == 200 else None
        while task is not None and not self.stop.is_set():
            answer = self.rng.choice(["left", "left", "right", "tie", "bothbad"])
            status, raw = self.call("POST", f"/api/studies/{self.slug}/votes/", {"assignment": task["assignment"], "answer": answer})
            self.statuses[status] += 1
            if 200 <= status < 300:
                self.answered.append(task["assignment"])
                task = json.loads(raw)["next"]["task"]
            else:  # not answered: ask again for a task
                status, raw = self.call("GET", f"/api/studies/{self.slug}/next-task/")
                task = json.loads(raw)["task"] if status == 200 else None


def replay_elo(votes, both_bad_as_tie: bool) -> dict[int, list]:
    """Online Elo from scratch (K 4, base 10, scale 400, start 1000), written out independently."""
    ratings: dict[int, float] = defaultdict(lambda: 1000.0)
    counts: Counter = Counter()
    for gl, gr, choice in votes:
        s = {"left": 1.0, "right": 0.0, "tie": 0.5, "bothbad": 0.5 if both_bad_as_tie else None}[choice]
        if s is None:
            continue
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[gr] - ratings[gl]) / 400.0))
        ratings[gl] += 4.0 * (s - expected)
        ratings[gr] -= 4.0 * (s - expected)
        counts[gl] += 1
        counts[gr] += 1
    return {g: [ratings[g], counts[g]] for g in ratings}


@pytest.fixture
def private_celery(settings, tmp_path, transactional_db):
    """Point this process's Celery app (the live server's vote hooks) at a private Redis and queue."""
    from django.db import connection

    from arena import derived
    from arenasite.celery import app

    need(shutil.which("redis-server") is not None, "redis-server (apt-get install redis-server)")
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    redis = RedisServer(tmp_path)
    redis.start()
    queue = f"fault-{uuid.uuid4().hex[:8]}"
    old = (app.conf.broker_write_url, app.conf.task_always_eager, app.conf.task_default_queue, app.conf.task_routes)
    app._after_fork()  # forget pooled connections: the next publish connects to the new broker
    app.conf.broker_write_url = redis.url
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    app.conf.task_routes = {"judging.*": {"queue": queue + "-gpu"}}
    app.amqp.__dict__.pop("router", None)
    settings.ARENA_RECOMPUTE_DEBOUNCE_SECONDS = 1
    settings.ARENA_BOOTSTRAP_ROUNDS = 50
    settings.ARENA_DERIVATION_STALE_SECONDS = STALE_SECONDS
    derived.publish_backoff_clear()
    db = connection.settings_dict
    db_url = f"postgres://{db['USER']}{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    worker = Worker(broker=redis.url, db_url=db_url, media_root=settings.MEDIA_ROOT, queue=queue, log_path=tmp_path / "worker.log")
    try:
        yield redis, worker
    finally:
        worker.stop()
        redis.stop()
        app._after_fork()
        app.conf.broker_write_url, app.conf.task_always_eager, app.conf.task_default_queue, app.conf.task_routes = old
        app.amqp.__dict__.pop("router", None)
        derived.publish_backoff_clear()


def test_boards_catch_up_after_a_killed_worker_and_a_redis_restart_under_concurrent_votes(
    private_celery, live_server, make_study, django_user_model
):
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from arena.models import Vote
    from ratings.models import EloState, LeaderboardResult, RecomputeState
    from ratings.services import study_recompute

    redis, worker = private_celery
    # Room for far more votes than the run casts (pairs x prompts x annotators per item), so the
    # voters never run out of tasks before the faults are over.
    study = make_study(kinds=("pairwise",), prompts=40, quota_per_annotator=100_000, overlap_target=ANNOTATORS)
    criterion = study.criteria.get()
    group = Group.objects.get(name="annotator")
    tokens = []
    for k in range(ANNOTATORS):
        user = django_user_model.objects.create_user(f"voter{k}", f"voter{k}@example.org", "pw-voter-123")
        user.groups.add(group)
        tokens.append(Token.objects.create(user=user).key)
    worker.start()

    stop = threading.Event()
    voters = [Annotator(base_url=live_server.url, token=t, slug=study.slug, stop=stop, seed=k) for k, t in enumerate(tokens)]
    for v in voters:
        v.start()

    def votes_so_far() -> int:
        return sum(len(v.answered) for v in voters)

    def wait_for_votes(n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while votes_so_far() < n and time.monotonic() < deadline:
            time.sleep(0.1)

    wait_for_votes(40)
    deadline = time.monotonic() + 20  # the online Elo runs a debounce interval after the first votes
    while time.monotonic() < deadline:
        applied_before_kill = EloState.objects.filter(study=study).values_list("votes_applied", flat=True).first() or 0
        if applied_before_kill:
            break
        time.sleep(0.1)
    worker.kill9()  # mid-run: it holds unacknowledged messages, maybe a half-done batch
    wait_for_votes(votes_so_far() + 30)
    worker.start()
    wait_for_votes(votes_so_far() + 40)
    redis.stop()  # every queued message is gone; votes keep coming while it is down
    during_outage = votes_so_far()
    wait_for_votes(during_outage + 30)
    during_outage = votes_so_far() - during_outage
    stop.set()
    for v in voters:
        v.join(30)
    redis.start()
    last_fault = time.monotonic()

    # Every 2xx vote is stored, exactly once, and nothing else is.
    answered = [a for v in voters for a in v.answered]
    statuses = sum((v.statuses for v in voters), Counter())
    assert applied_before_kill > 0  # the worker was really working when it was killed
    assert during_outage > 0 and len(answered) >= 100, (during_outage, len(answered), statuses)
    assert all(200 <= s < 300 for s in statuses), statuses
    stored = Counter(str(a) for a in Vote.objects.filter(study=study).values_list("assignment_id", flat=True))
    assert len(answered) == len(set(answered))
    assert set(stored) == set(answered) and set(stored.values()) == {1}

    pairwise = Vote.objects.filter(study=study, kind="pairwise", is_gold=False).count()

    def caught_up() -> bool:
        elo = EloState.objects.filter(study=study, criterion=criterion).first()
        state = RecomputeState.objects.filter(study=study).first()
        board = LeaderboardResult.objects.filter(study=study, criterion=criterion, category="").first()
        return bool(
            elo and elo.votes_applied == pairwise
            and not Vote.objects.filter(study=study, elo_applied=False).exists()
            and state and state.requested_at is None and not state.running
            and board and board.data["totals"]["pairwise"] == pairwise
        )

    while not caught_up() and time.monotonic() - last_fault < 60:
        if worker.proc.poll() is not None:
            # kombu can end a worker whose broker vanished mid-restore ("Unrecoverable error");
            # in production its supervisor starts it again, and so does this test.
            worker.start()
        time.sleep(0.25)
    waited = time.monotonic() - last_fault
    assert caught_up(), f"not caught up {waited:.0f} s after the last fault:\n" + worker.log_path.read_text()[-4000:]

    # The online Elo is an exact replay of the votes in the documented order, (elo_batch, id).
    elo = EloState.objects.get(study=study, criterion=criterion)
    ordered = Vote.objects.filter(study=study, kind="pairwise", is_gold=False).order_by("elo_batch", "id")
    expected = replay_elo(ordered.values_list("generator_left_id", "generator_right_id", "choice"), study.both_bad_as_tie)
    stored_elo = {int(g): v for g, v in elo.ratings.items()}
    assert stored_elo.keys() == expected.keys()
    for g, (rating, n) in expected.items():
        assert stored_elo[g][0] == pytest.approx(rating, abs=1e-9) and stored_elo[g][1] == n

    # The stored board is what a fresh recompute gives.
    stored_board = LeaderboardResult.objects.get(study=study, criterion=criterion, category="").data
    worker.stop()
    assert study_recompute(study_id=study.pk)
    fresh = LeaderboardResult.objects.get(study=study, criterion=criterion, category="").data
    assert stored_board == fresh
    print(f"\n{len(answered)} votes ({during_outage} while Redis was down); caught up {waited:.1f} s after the last fault")
