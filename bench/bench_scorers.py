"""OCR (PP-OCRv4) and safety (NudeNet) images/s on CPU: the job path vs the bare model call.

"job path": the scoring job as the CPU worker runs it (``judging.services.score_outputs_run``):
read the outputs from the database, open and decode each stored image, run the model, build
the per-output record, write each batch in one transaction, update progress.
"bare": the model call alone on images already decoded into arrays (RapidOCR's ``__call__``
on a BGR array; NudeNet's preprocessing and ``InferenceSession.run``).
The ratio is job-path images/s over bare images/s (1.0 = no overhead).

Uses a throw-away SQLite database and media folder under a temporary directory (set
BENCH_DATABASE_URL to use PostgreSQL instead). Images: half signs with text drawn with
DejaVu Sans (or Pillow's default font), half textured pictures without text.

    python bench/bench_scorers.py [--images 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORDS = ["OPEN LATE", "FRESH BREAD", "HELLO WORLD", "SALE TODAY", "NO PARKING", "GOOD LUCK"]


def make_images(count: int, size: int = 512) -> list[tuple[bytes, str]]:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 48)
    except OSError:
        font = ImageFont.load_default(size=48)
    rng = np.random.default_rng(0)
    out = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        if i % 2 == 0:
            word = WORDS[i // 2 % len(WORDS)]
            im = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(180, 255, 3)))
            ImageDraw.Draw(im).text((40, size // 2 - 30), word, font=font, fill=(20, 20, 30))
            prompt = f'a sign that says "{word}"'
        else:
            base = np.stack([(xx * (i + 1)) % 256, (yy * 3 + i * 7) % 256, (xx + yy + 11 * i) % 256], axis=-1)
            arr = np.clip(base + rng.integers(0, 48, size=(size, size, 3)), 0, 255).astype(np.uint8)
            im = Image.fromarray(arr)
            prompt = f'a poster that says "{WORDS[i % len(WORDS)]}"'
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        out.append((buf.getvalue(), prompt))
    return out


def setup_django(tmp: str) -> None:
    db_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp}/bench.sqlite3"
    os.environ.update(
        DATABASE_URL=db_url, DEBUG="1", DJANGO_SETTINGS_MODULE="arenasite.settings", LOG_LEVEL="WARNING",
        MEDIA_ROOT=os.path.join(tmp, "media"), ARENA_VAR_DIR=os.path.join(tmp, "var"), ARENA_SCORERS="",
        CELERY_TASK_ALWAYS_EAGER="1",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def import_images(tmp: str, images) -> list[int]:
    from arena.imports import outputs_import

    path = os.path.join(tmp, "bench.zip")
    rows = []
    with zipfile.ZipFile(path, "w") as zf:
        for i, (data, prompt) in enumerate(images):
            zf.writestr(f"{i}.png", data)
            rows.append({"generator": f"gen-{i % 4}", "prompt": prompt, "image": f"{i}.png"})
        zf.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    return outputs_import(path=path).output_ids


def job_path(name: str, output_ids: list[int]) -> float:
    from judging.models import OutputScore, ScoreJob
    from judging.services import score_outputs_run

    OutputScore.objects.filter(scorer=name).delete()
    job = ScoreJob.objects.create(kind="score", scorer=name, output_ids=output_ids, total=len(output_ids), status="running")
    t0 = time.perf_counter()
    score_outputs_run(job=job)
    elapsed = time.perf_counter() - t0
    assert OutputScore.objects.filter(scorer=name).count() == len(output_ids)
    return len(output_ids) / elapsed


def bare(name: str, scorer, arrays: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    if name == "ocr":
        for a in arrays:
            scorer.engine(a)
    else:
        from nudenet.nudenet import _read_image

        for a in arrays:
            blob = _read_image(a, 320)[0]
            scorer.session.run(None, {scorer.input_name: blob})
    return len(arrays) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side; best is kept")
    args = parser.parse_args()

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from judging.services import scorer_load

        images = make_images(args.images)
        ids = import_images(tmp, images)
        arrays = [np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))[:, :, ::-1].copy() for d, _ in images]
        print(f"{len(ids)} images of 512x512 (half with text), CPU, onnxruntime threads: default")
        print(f"{'scorer':8} {'bare img/s':>11} {'job path img/s':>15} {'ratio':>7}")
        for name in ("ocr", "nsfw"):
            scorer = scorer_load(name)
            bare(name, scorer, arrays[:2])  # warm-up
            b = j = 0.0
            for _ in range(args.rounds):  # interleaved, so both sides see the same machine load
                b = max(b, bare(name, scorer, arrays))
                j = max(j, job_path(name, ids))
            print(f"{name:8} {b:11.2f} {j:15.2f} {j / b:7.2f}")


if __name__ == "__main__":
    main()
