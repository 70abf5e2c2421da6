"""Shared personas, image and archive builders, and service checks."""

from __future__ import annotations

import io
import json
import os
import socket
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image as PILImage

def need(condition: bool, what: str) -> None:
    """A test that needs a service or a browser fails under ARENA_STRICT=1 and skips otherwise."""
    from django.conf import settings

    if condition:
        return
    if settings.ARENA_STRICT:
        pytest.fail(f"{what} is required (ARENA_STRICT=1)")
    pytest.skip(f"{what} is not available")


def port_open(url: str, default_port: int) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ARENA_UPLOAD_DIR = tmp_path / "uploads"
    settings.MEDIA_ROOT.mkdir()
    settings.ARENA_UPLOAD_DIR.mkdir()


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Per-process caches keyed by ids; a rolled-back test may hand the same ids out again."""
    from arena.ttl_cache import caches_clear

    caches_clear()


@pytest.fixture(autouse=True)
def _eager_celery():
    """Tasks run in-process unless a test starts a real worker."""
    from arenasite.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False


def task_next(*, study, annotator, ahead: int = 1):
    """The annotator's current task and those reserved after it, as the voting page gets them."""
    from arena.voting import tasks_serve

    served = tasks_serve(study=study, annotator=annotator, ahead=ahead)
    return served.current, served.ahead


# --------------------------------------------------------------------------- personas


def reference_data():
    """Groups and criteria made by a data migration; transactional tests flush them, so make sure."""
    import importlib

    from django.apps import apps

    importlib.import_module("arena.migrations.0002_roles_and_criteria").forwards(apps, None)


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.org", "pw-admin-123", is_staff=True, is_superuser=True)


@pytest.fixture
def researcher(django_user_model):
    from django.contrib.auth.models import Group

    reference_data()
    u = django_user_model.objects.create_user("rosa", "rosa@example.org", "pw-research-123")
    u.groups.add(Group.objects.get(name="researcher"))
    return u


@pytest.fixture
def annotator_user(django_user_model):
    from django.contrib.auth.models import Group

    reference_data()
    u = django_user_model.objects.create_user("ann", "ann@example.org", "pw-annot-123")
    u.groups.add(Group.objects.get(name="annotator"))
    return u


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("otto", "otto@example.org", "pw-outsider-123")


@pytest.fixture
def personas(admin_user, researcher, annotator_user, outsider):
    """name -> user (None for anonymous)."""
    return {"admin": admin_user, "researcher": researcher, "annotator": annotator_user, "outsider": outsider, "anonymous": None}


def client_for(user):
    from django.test import Client

    c = Client()
    if user is not None:
        c.force_login(user)
    return c


def api_client_for(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    c = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        c.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return c


# --------------------------------------------------------------------------- images and archives


def png_bytes(color=(200, 30, 30), size=(32, 24), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def manifest_jsonl(rows: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def sample_files(n_generators=2, n_prompts=2) -> dict[str, bytes]:
    """A valid upload: every generator answers every prompt with its own colour."""
    rows, files = [], {}
    for g in range(n_generators):
        for p in range(n_prompts):
            name = f"img/g{g}_p{p}.png"
            files[name] = png_bytes(color=(40 + 60 * g, 20 * p, 90), size=(32 + p, 24))
            rows.append({"generator": f"gen-{g}", "prompt": f"a photo of thing {p}", "image": name, "seed": p, "category": "objects"})
    files["manifest.jsonl"] = manifest_jsonl(rows)
    return files


# --------------------------------------------------------------------------- a real Celery worker


@pytest.fixture
def celery_worker_process(transactional_db, settings, tmp_path, request):
    """A real `celery worker` process on the configured broker, reading the test database.

    It consumes private queues so that no other worker on the same broker takes its tasks;
    all of them, or those a ``worker_queues("default", "cpu")`` mark names.
    """
    import subprocess
    import sys
    import time
    import uuid

    from django.db import connection

    from arenasite.celery import app

    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis"):
        need(port_open(broker, 6379), f"Redis at {broker}")
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        db_url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        db_url = f"sqlite:///{db['NAME']}"
    tag = uuid.uuid4().hex[:8]
    queues = {"default": f"test-default-{tag}", "gpu": f"test-gpu-{tag}", "cpu": f"test-cpu-{tag}"}
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="arenasite.settings",
        ARENA_DEFAULT_QUEUE=queues["default"],
        ARENA_GPU_QUEUE=queues["gpu"],
        ARENA_CPU_QUEUE=queues["cpu"],
        ARENA_RECOMPUTE_DEBOUNCE_SECONDS="0",
    )
    log_path = tmp_path / "worker.log"
    log = open(log_path, "w")
    base = Path(__file__).resolve().parent.parent
    mark = request.node.get_closest_marker("worker_queues")
    consumed = [queues[q] for q in mark.args] if mark else list(queues.values())
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "arenasite", "worker", "-Q", ",".join(consumed),
         "-P", "solo", "-n", f"test-{tag}@%h", "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    old = (app.conf.task_always_eager, app.conf.task_default_queue, app.conf.task_routes)
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queues["default"]
    app.conf.task_routes = {"judging.*": {"queue": queues["gpu"]}}
    app.amqp.__dict__.pop("router", None)
    settings.ARENA_GPU_QUEUE, settings.ARENA_CPU_QUEUE = queues["gpu"], queues["cpu"]
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("Celery worker did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.2)
    proc.log_path = log_path
    try:
        yield proc
    finally:
        app.conf.task_always_eager, app.conf.task_default_queue, app.conf.task_routes = old
        app.amqp.__dict__.pop("router", None)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --------------------------------------------------------------------------- a study to vote in

GENERATOR_NAMES = ["zebrafusion-xl", "quokka-diffusion", "narwhal-gan", "axolotl-flow"]


@pytest.fixture
def make_study(tmp_path):
    """Build a study with outputs imported through the real import service."""
    from arena.imports import outputs_import
    from arena.models import Criterion, Study
    from arena.voting import study_index_clear

    reference_data()
    study_index_clear()
    counter = {"n": 0}

    def build(*, generators=GENERATOR_NAMES, prompts=5, kinds=("pairwise", "likert", "binary"), questions=None,
              categories=None, **options) -> "Study":
        """`questions`: prompt number -> its yes/no questions; `categories`: prompt number -> category."""
        counter["n"] += 1
        slug = options.pop("slug", f"study-{counter['n']}")
        study = Study.objects.create(name=f"Study {slug}", slug=slug, vote_kinds=list(kinds), **options)
        study.criteria.add(Criterion.objects.get(slug="aesthetics"))
        rows, files = [], {}
        for g, gen in enumerate(generators):
            for p in range(prompts):
                name = f"{slug}/{g}-{p}.png"
                files[name] = png_bytes(color=(10 + 50 * g, 7 * p + counter["n"], 120), size=(16, 16))
                row = {"generator": gen, "prompt": f"{slug} prompt number {p}", "image": name}
                if questions and questions.get(p):
                    row["questions"] = questions[p]
                if categories and categories.get(p):
                    row["category"] = categories[p]
                rows.append(row)
        files["manifest.jsonl"] = manifest_jsonl(rows)
        outputs_import(path=make_zip(tmp_path / f"{slug}.zip", files), study=study)
        study_index_clear()
        return study

    return build


# --------------------------------------------------------------------------- a real browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser)."""
    need(Path(CHROMIUM).exists(), f"chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        need(False, "playwright for Python")
    # The ORM is used from the test thread while Playwright's event loop runs there.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
