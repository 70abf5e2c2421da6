"""A small demo study whose generators differ visibly, drawn with Pillow."""

from __future__ import annotations

import io
import json
import random
import tempfile
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .models import Criterion, Study
from .services import upload_import_local

SIZE = 256
COLORS = {
    "red": (214, 40, 40), "blue": (40, 90, 214), "green": (40, 160, 70), "yellow": (240, 200, 40),
    "orange": (240, 130, 30), "purple": (130, 60, 180),
}
BACKGROUNDS = {"white": (245, 245, 245), "sand": (225, 205, 160), "night": (20, 24, 48), "sky": (150, 200, 240)}
PROMPTS = [
    ("a red circle on a white background", "red", "circle", "white", "shapes"),
    ("a blue square on sand", "blue", "square", "sand", "shapes"),
    ("a green triangle in the sky", "green", "triangle", "sky", "shapes"),
    ("a yellow star at night", "yellow", "star", "night", "night"),
    ("an orange circle at night", "orange", "circle", "night", "night"),
    ("a purple square in the sky", "purple", "square", "sky", "shapes"),
]
# Prompts asking for rendered text: the quoted span is the text the OCR metric looks for.
TEXT_PROMPTS = [
    ('a shop sign that says "OPEN LATE"', "OPEN LATE", "sand", "text"),
    ('a poster with the words "HELLO WORLD"', "HELLO WORLD", "white", "text"),
]
DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
GENERATORS = {
    "crisp-xl": "Draws what the prompt asks, sharp.",
    "soft-focus-2": "Right content, blurred.",
    "grainy-flow": "Right content under heavy noise.",
    "off-prompt-gan": "Sharp, but wrong colour and shape.",
}


def _shape(draw: ImageDraw.ImageDraw, shape: str, color, rng: random.Random) -> None:
    c, r = SIZE // 2 + rng.randint(-20, 20), rng.randint(60, 85)
    if shape == "circle":
        draw.ellipse([c - r, c - r, c + r, c + r], fill=color)
    elif shape == "square":
        draw.rectangle([c - r, c - r, c + r, c + r], fill=color)
    elif shape == "triangle":
        draw.polygon([(c, c - r), (c - r, c + r), (c + r, c + r)], fill=color)
    else:
        import math

        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = math.pi / 2 + i * math.pi / 5
            pts.append((c + rad * math.cos(a), c - rad * math.sin(a)))
        draw.polygon(pts, fill=color)


def draw(generator: str, color: str, shape: str, background: str, seed: int) -> bytes:
    rng = random.Random(f"{generator}-{color}-{shape}-{seed}")
    if generator == "off-prompt-gan":
        color = rng.choice([c for c in COLORS if c != color])
        shape = rng.choice([s for s in ("circle", "square", "triangle", "star") if s != shape])
    im = Image.new("RGB", (SIZE, SIZE), BACKGROUNDS[background])
    _shape(ImageDraw.Draw(im), shape, COLORS[color], rng)
    if generator == "soft-focus-2":
        im = im.filter(ImageFilter.GaussianBlur(6))
    elif generator == "grainy-flow":
        noise = Image.effect_noise((SIZE, SIZE), 90).convert("RGB")
        im = Image.blend(im, noise, 0.45)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _misspell(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters of one word (what weak text renderers do)."""
    words = text.split()
    k = rng.randrange(len(words))
    w = words[k]
    i = rng.randrange(1, len(w) - 1)
    words[k] = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    return " ".join(words)


def draw_text(generator: str, text: str, background: str, seed: int) -> bytes:
    rng = random.Random(f"{generator}-{text}-{seed}")
    if generator == "off-prompt-gan":
        text = _misspell(text, rng)
    try:
        font = ImageFont.truetype(DEJAVU, 34)
    except OSError:
        font = ImageFont.load_default(size=34)
    im = Image.new("RGB", (SIZE, SIZE), BACKGROUNDS[background])
    d = ImageDraw.Draw(im)
    d.rectangle([10, 90, SIZE - 10, 170], fill=(250, 250, 250), outline=(40, 40, 40), width=3)
    lines = text.split()
    y = 130 - 20 * len(lines) + rng.randint(-4, 4)
    for line in lines:
        box = d.textbbox((0, 0), line, font=font)
        d.text(((SIZE - (box[2] - box[0])) // 2, y), line, font=font, fill=(25, 25, 35))
        y += 40
    if generator == "soft-focus-2":
        im = im.filter(ImageFilter.GaussianBlur(2.5))
    elif generator == "grainy-flow":
        noise = Image.effect_noise((SIZE, SIZE), 90).convert("RGB")
        im = Image.blend(im, noise, 0.45)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def demo_archive(path: Path, *, seeds: int = 2) -> Path:
    rows = []
    with zipfile.ZipFile(path, "w") as zf:
        for p_idx, (text, color, shape, bg, category) in enumerate(PROMPTS):
            for g_idx, gen in enumerate(GENERATORS):
                for seed in range(seeds):
                    name = f"images/{p_idx:02d}-{g_idx}-{seed}.png"
                    zf.writestr(name, draw(gen, color, shape, bg, seed))
                    rows.append({"generator": gen, "prompt": text, "image": name, "seed": seed, "category": category,
                                 "questions": [f"Is there a {shape}?", f"Is the {shape} {color}?"]})
        for t_idx, (prompt, wanted, bg, category) in enumerate(TEXT_PROMPTS):
            for g_idx, gen in enumerate(GENERATORS):
                for seed in range(seeds):
                    name = f"images/text-{t_idx:02d}-{g_idx}-{seed}.png"
                    zf.writestr(name, draw_text(gen, wanted, bg, seed))
                    rows.append({"generator": gen, "prompt": prompt, "image": name, "seed": seed, "category": category})
        zf.writestr("manifest.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def demo_load() -> Study:
    study, _ = Study.objects.get_or_create(
        slug="demo",
        defaults={
            "name": "Demo: shapes and colours",
            "description": "Four toy generators draw simple scenes; one is sharp, one blurred, one noisy, one off-prompt.",
            "instructions": (
                "You will see images made by text-to-image models from the prompt shown above them. "
                "Judge each image by the question on screen. Use the keyboard shortcuts shown under the buttons. "
                "If an image is disturbing or broken, flag it."
            ),
            "vote_kinds": ["pairwise", "likert", "binary", "questions"],
            "overlap_target": 3,
            "quota_per_annotator": 30,
            "reveal_after_vote": True,
        },
    )
    study.criteria.add(*Criterion.objects.filter(slug__in=["aesthetics", "alignment"]))
    with tempfile.TemporaryDirectory() as tmp:
        upload_import_local(path=demo_archive(Path(tmp) / "demo.zip"), study=study)
    return study
