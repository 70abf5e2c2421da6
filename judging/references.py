"""Reference sets: the real images (or pytorch-fid statistics) generators are compared with."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from arena.archives import IMAGE_SUFFIXES, ArchiveRejected, image_check, source_open
from arena.models import Image
from arena.storage import files_orphaned_remove, image_store

from .models import ReferenceSet

class ReferenceError_(Exception):
    pass


def _image_files(path: Path) -> list[tuple[str, bytes]]:
    """Every image file of a folder or .zip, read through the same checked reader as uploads."""
    if not path.is_dir() and not zipfile.is_zipfile(path):
        raise ReferenceError_(f"{path} is not a folder, a .zip or an .npz")
    try:
        with source_open(path) as source:
            return [(n, source.read(n)) for n in source.names() if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    except ArchiveRejected as exc:
        raise ReferenceError_(f"{path.name}: " + "; ".join(exc.messages)) from None


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
    written: list[tuple[str, str]] = []
    try:
        with transaction.atomic():
            for c, data in checked:
                if image_store(data=data, sha256=c.sha256, ext=c.ext):
                    written.append((c.sha256, c.ext))
            ref = _reference_store(slug=slug, description=description, checked=checked)
    except BaseException:
        files_orphaned_remove(written)  # nothing of a failed import stays on disk
        raise
    return ref


def _reference_store(*, slug: str, description: str, checked: list) -> ReferenceSet:
    Image.objects.bulk_create(
        [Image(sha256=c.sha256, format=c.ext, width=c.width, height=c.height, size_bytes=len(data)) for c, data in checked],
        ignore_conflicts=True,
    )
    ReferenceSet.objects.filter(name=slug).delete()
    shas = {c.sha256 for c, _ in checked}
    ref = ReferenceSet.objects.create(name=slug, description=description, source=ReferenceSet.Source.IMAGES, n_images=len(shas))
    ref.images.add(*Image.objects.filter(sha256__in=shas))
    return ref
