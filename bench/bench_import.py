"""Import of a 100,000-row manifest: peak memory and rows/s of `manage.py import_outputs`.

The import streams the manifest, keeps a few small fields per row, decodes each distinct image
once, and inserts in batches of 1,000. The baseline is the peak memory of `manage.py check`
in the same environment (Django and the apps loaded, nothing imported), so the ratio shows
what the import itself costs.

    python bench/bench_import.py [--rows 100000]

Uses PostgreSQL (database arena_bench_import) when it answers on 127.0.0.1:5432, SQLite otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _postgres() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        return None
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS arena_bench_import"],
                   check=False, capture_output=True)
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE arena_bench_import"],
                       capture_output=True)
    return "postgres://postgres@127.0.0.1:5432/arena_bench_import" if r.returncode == 0 else None


def build_zip(path: Path, rows: int) -> None:
    generators = 200
    prompts = rows // generators
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(20):
            buf = io.BytesIO()
            Image.new("RGB", (64, 64), (i * 12, 40, 200 - i * 9)).save(buf, "PNG")
            zf.writestr(f"img/{i}.png", buf.getvalue())
        lines = []
        for g in range(generators):
            for p in range(prompts):
                lines.append(json.dumps({
                    "generator": f"model-{g:03d}", "prompt": f"prompt number {p}: a scene with some words in it",
                    "image": f"img/{(g + p) % 20}.png", "seed": p, "category": f"cat-{p % 7}",
                    "metadata": {"steps": 30, "sampler": "euler", "guidance": 7.5},
                }))
        zf.writestr("manifest.jsonl", "\n".join(lines) + "\n")


def run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak RSS of the child in MiB, output)"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    # ru_maxrss of children is the largest of any child so far: run the small command first.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dt, max(peak, before) / 1024, p.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        env = dict(os.environ, DEBUG="1", ARENA_VAR_DIR=str(work / "var"), MEDIA_ROOT=str(work / "media"),
                   ARENA_SCORERS="", ARENA_UPLOAD_MAX_ROWS=str(max(args.rows, 1)))
        db = _postgres()
        env["DATABASE_URL"] = db or f"sqlite:///{work / 'bench.sqlite3'}"
        py = sys.executable
        run([py, "manage.py", "migrate", "--noinput"], env)
        archive = work / "outputs.zip"
        build_zip(archive, args.rows)
        base_s, base_mib, _ = run([py, "manage.py", "check"], env)
        secs, peak_mib, out = run([py, "manage.py", "import_outputs", str(archive)], env)
        print(f"database: {'PostgreSQL' if db else 'SQLite'}; manifest: {args.rows:,} rows, "
              f"{archive.stat().st_size / 2**20:.1f} MiB zipped")
        print(f"  import_outputs      {secs:7.1f} s   {args.rows / secs:8,.0f} rows/s   peak RSS {peak_mib:6.0f} MiB")
        print(f"  baseline (check)    {base_s:7.1f} s                     peak RSS {base_mib:6.0f} MiB")
        print(f"  import's own memory: {peak_mib - base_mib:.0f} MiB over the baseline, "
              f"{(peak_mib - base_mib) * 2**20 / args.rows:,.0f} bytes per row")
        print(f"  {(out.splitlines()[-1] if out else '')[:160]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if db:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS arena_bench_import"],
                           check=False, capture_output=True)


if __name__ == "__main__":
    main()
