"""Reference sets: the real images (or pytorch-fid statistics) generators are compared with."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from arena.imports import member_name_unsafe, image_check
from arena.models import Image
from arena.storage import image_store

from .models import ReferenceSet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ReferenceError_(Exception):
    pass


def _image_files(path: Path) -> list[tuple[str, bytes]]:
    if path.is_dir():
        return [(str(p.relative_to(path)), p.read_bytes()) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    if zipfile.is_zipfile(path):
        out = []
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > settings.ARENA_UPLOAD_MAX_ENTRIES or sum(i.file_size for i in infos) > settings.ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES:
                raise ReferenceError_(f"{path.name} is over the archive limits (ARENA_UPLOAD_MAX_ENTRIES / ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES)")
            for info in infos:
                if member_name_unsafe(info.filename):
                    raise ReferenceError_(f"{path.name} has an entry with an absolute path or '..': {info.filename!r}")
                if not info.is_dir() and Path(info.filename).suffix.lower() in IMAGE_SUFFIXES:
                    out.append((info.filename, zf.read(info)))
        return out
    raise ReferenceError_(f"{path} is not a folder, a .zip or an .npz")


def reference_import(*, name: str, path: Path, description: str = "") -> ReferenceSet:
    slug = slugify(name)
    if not slug:
        raise ReferenceError_("the reference set needs a name")
    if not path.exists():
        raise ReferenceError_(f"{path} does not exist")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path) as f:
                mu, sigma = np.asarray(f["mu"], dtype=np.float64), np.asarray(f["sigma"], dtype=np.float64)
        except (KeyError, ValueError, OSError) as exc:
            raise ReferenceError_(f"{path.name} must be an .npz with arrays 'mu' and 'sigma' ({exc})") from None
        if mu.ndim != 1 or sigma.shape != (mu.size, mu.size) or not np.isfinite(sigma).all():
            raise ReferenceError_(f"{path.name}: mu must be (d,) and sigma (d, d), finite; got {mu.shape} and {sigma.shape}")
        dest = Path(settings.MEDIA_ROOT) / "references" / f"{slug}.npz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        np.savez(dest, mu=mu, sigma=sigma)
        with transaction.atomic():
            ReferenceSet.objects.filter(name=slug).delete()
            return ReferenceSet.objects.create(name=slug, description=description, source=ReferenceSet.Source.NPZ, inception_stats=str(dest))
    files = _image_files(path)
    if len(files) < 2:
        raise ReferenceError_(f"{path} holds {len(files)} image(s); a reference set needs at least 2")
    checked, errors = [], []
    for fname, data in files:
        c = image_check(fname, data)
        if isinstance(c, str):
            errors.append(c)
        else:
            checked.append((c, data))
    if errors:
        raise ReferenceError_("nothing imported:\n  " + "\n  ".join(errors[:50]))
    with transaction.atomic():
        for c, data in checked:
            image_store(data=data, sha256=c.sha256, ext=c.ext)
        Image.objects.bulk_create(
            [Image(sha256=c.sha256, format=c.ext, width=c.width, height=c.height, size_bytes=len(data)) for c, data in checked],
            ignore_conflicts=True,
        )
        ReferenceSet.objects.filter(name=slug).delete()
        shas = {c.sha256 for c, _ in checked}
        ref = ReferenceSet.objects.create(name=slug, description=description, source=ReferenceSet.Source.IMAGES, n_images=len(shas))
        ref.images.add(*Image.objects.filter(sha256__in=shas))
    return ref
