"""The site refuses to start with unsafe or malformed configuration."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    base.update(env)
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=base, capture_output=True, text=True)


def test_production_refuses_to_start_without_a_secret_key():
    res = check(DEBUG="0", ALLOWED_HOSTS="arena.example.org")
    assert res.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in res.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    res = check(DEBUG="0", SECRET_KEY="x" * 50)
    assert res.returncode != 0
    assert "ALLOWED_HOSTS must be set when DEBUG is off" in res.stderr


def test_a_malformed_value_is_named_instead_of_ignored():
    res = check(DEBUG="maybe")
    assert res.returncode != 0 and "DEBUG='maybe' is not a boolean" in res.stderr
    res = check(DEBUG="1", ARENA_UPLOAD_MAX_BYTES="lots")
    assert res.returncode != 0 and "ARENA_UPLOAD_MAX_BYTES='lots' is not an integer" in res.stderr
    res = check(DEBUG="1", ARENA_DEVICE="gpu")
    assert res.returncode != 0 and "ARENA_DEVICE='gpu' must be auto, cpu, cuda or cuda:N" in res.stderr
    assert check(DEBUG="1", ARENA_DEVICE="cuda:1").returncode == 0
    res = check(DEBUG="1", DATABASE_URL="nonsense://x")
    assert res.returncode != 0 and "DATABASE_URL" in res.stderr


def test_production_settings_start_with_both_set():
    res = check(DEBUG="0", SECRET_KEY="x" * 50, ALLOWED_HOSTS="arena.example.org")
    assert res.returncode == 0, res.stderr


def test_a_judge_setting_that_cannot_be_used_is_named_at_start():
    res = check(DEBUG="1", ARENA_JUDGES="[{name: 1}]")
    assert res.returncode != 0 and "ARENA_JUDGES is not valid JSON" in res.stderr
    res = check(DEBUG="1", ARENA_JUDGES='[{"name": "a", "backend": "http", "model": "m"}]')
    assert res.returncode != 0 and "ARENA_JUDGES[0]: url must be an http(s) URL" in res.stderr
    res = check(DEBUG="1", ARENA_JUDGE_URL="http://gpu:8000/v1")
    assert res.returncode != 0 and "ARENA_JUDGE_URL is set but ARENA_JUDGE_MODEL" in res.stderr
    assert check(DEBUG="1", ARENA_JUDGE_URL="http://gpu:8000/v1", ARENA_JUDGE_MODEL="qwen").returncode == 0
