"""Content-addressed image storage: a file's path derives from its sha256 alone.

Originals live under `images/` (staff, researchers and exports); display renditions, the
only image bytes annotators ever receive, live under `display/`.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings

from .models import Image, Rendition, image_relative_path, rendition_relative_path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_path(sha256: str, ext: str) -> Path:
    return Path(settings.MEDIA_ROOT) / image_relative_path(sha256, ext)


def rendition_path(sha256: str) -> Path:
    return Path(settings.MEDIA_ROOT) / rendition_relative_path(sha256)


def _write_once(path: Path, data: bytes) -> bool:
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def image_store(*, data: bytes, sha256: str, ext: str) -> bool:
    """Write the bytes under their hash unless already there. Returns True if a new file was written."""
    return _write_once(image_path(sha256, ext), data)


def image_remove(*, sha256: str, ext: str) -> None:
    image_path(sha256, ext).unlink(missing_ok=True)


def rendition_store(*, data: bytes, sha256: str) -> bool:
    return _write_once(rendition_path(sha256), data)


def rendition_remove(*, sha256: str) -> None:
    rendition_path(sha256).unlink(missing_ok=True)


def files_orphaned_remove(images: list[tuple[str, str]], renditions: list[str] = ()) -> int:
    """Delete those of the given files (originals as (sha256, ext), renditions by sha256) that no
    stored row refers to: what a rolled-back or killed import wrote. Returns how many were removed."""
    removed = 0
    if images:
        kept = set(Image.objects.filter(sha256__in=[s for s, _ in images]).values_list("sha256", flat=True))
        for sha, ext in images:
            path = image_path(sha, ext)
            if sha not in kept and path.exists():
                path.unlink(missing_ok=True)
                removed += 1
    if renditions:
        kept = set(Rendition.objects.filter(sha256__in=list(renditions)).values_list("sha256", flat=True))
        for sha in renditions:
            path = rendition_path(sha)
            if sha not in kept and path.exists():
                path.unlink(missing_ok=True)
                removed += 1
    return removed
