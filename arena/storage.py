"""Content-addressed image storage: a file's path derives from its sha256 alone.

Originals live under `images/` (staff, researchers and exports); display renditions, the
only image bytes annotators ever receive, live under `display/`.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings

from .models import image_relative_path, rendition_relative_path


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
