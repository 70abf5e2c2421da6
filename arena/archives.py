"""Reading uploaded files safely: archives and folders, and the check every image passes.

One reader for every import that takes a .zip or a folder (model outputs, reference sets):
limits on size and entry count, no absolute paths, '..', symbolic links or doubled names, and
no entry that unpacks past the size its header declares. `image_check` decodes an image in full
and says in words what is wrong with it.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import PIL.Image
from django.conf import settings

from .quoting import quoted
from .storage import sha256_hex

PIL_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ArchiveRejected(Exception):
    """The archive or folder cannot be read as a whole; `messages` say why."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(slots=True)
class CheckedImage:
    sha256: str
    ext: str
    width: int
    height: int


def member_name_unsafe(name: str) -> bool:
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in PurePosixPath(name).parts


class FileSource:
    """Files of an upload, addressed by their path relative to `prefix` (a folder inside it)."""

    prefix = ""

    def names(self) -> Iterator[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self, name: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def open(self, name: str):  # pragma: no cover - interface
        raise NotImplementedError

    def exists(self, name: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def missing_reason(self, name: str) -> str:
        return f"image file {quoted(name)} is not in the upload"

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZipSource(FileSource):
    def __init__(self, path: Path):
        size = path.stat().st_size
        limit = settings.ARENA_UPLOAD_MAX_BYTES
        if size > limit:
            raise ArchiveRejected([f"archive is {size:,} bytes, over the limit of {limit:,} bytes (ARENA_UPLOAD_MAX_BYTES)"])
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchiveRejected([f"{path.name} is not a valid .zip archive ({exc})"]) from None
        infos = self.zip.infolist()
        errors: list[str] = []
        max_entries = settings.ARENA_UPLOAD_MAX_ENTRIES
        if len(infos) > max_entries:
            errors.append(f"archive has {len(infos):,} entries, over the limit of {max_entries:,} (ARENA_UPLOAD_MAX_ENTRIES)")
        total = sum(i.file_size for i in infos)
        max_total = settings.ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES
        if total > max_total:
            errors.append(f"archive unpacks to {total:,} bytes, over the limit of {max_total:,} bytes (ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES)")
        unsafe = [i.filename for i in infos if member_name_unsafe(i.filename)]
        if unsafe:
            errors.append("archive has entries with absolute paths or '..': " + ", ".join(quoted(n) for n in unsafe[:10]))
        links = [i.filename for i in infos if (i.external_attr >> 16) & 0o170000 == 0o120000]
        if links:
            errors.append("archive has symbolic links, which are not accepted: " + ", ".join(quoted(n) for n in links[:10]))
        seen_names: set[str] = set()
        doubled = []
        for i in infos:
            if i.filename in seen_names and i.filename not in doubled:
                doubled.append(i.filename)
            seen_names.add(i.filename)
        if doubled:
            errors.append(
                "archive has more than one entry named " + ", ".join(quoted(n) for n in doubled[:10]) + "; each file may appear once"
            )
        if errors:
            self.zip.close()
            raise ArchiveRejected(errors)
        self.files = {i.filename: i for i in infos if not i.is_dir()}
        self._read_total = 0

    def names(self) -> Iterator[str]:
        n = len(self.prefix)
        return (name[n:] for name in sorted(self.files) if name.startswith(self.prefix))

    def exists(self, name: str) -> bool:
        return not member_name_unsafe(name) and (self.prefix + name) in self.files

    def read(self, name: str) -> bytes:
        info = self.files[self.prefix + name]
        # Read no more than the header promises, so a lying header cannot inflate past the caps.
        try:
            with self.zip.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            # A header that lies about the size fails the CRC check at the declared end.
            raise ArchiveRejected([f"archive entry {quoted(name)} is corrupt or not what its header declares ({exc})"]) from None
        if len(data) > info.file_size:
            raise ArchiveRejected([f"archive entry {quoted(name)} unpacks to more than its declared size"])
        self._read_total += len(data)
        if self._read_total > settings.ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES:
            raise ArchiveRejected(["archive unpacks past ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES"])
        return data

    def open(self, name: str):
        return self.zip.open(self.files[self.prefix + name])

    def close(self) -> None:
        self.zip.close()


class FolderSource(FileSource):
    def __init__(self, path: Path):
        self.root = path.resolve()

    def _linked(self, name: str) -> bool:
        """Whether the path, or a folder on its way, is a symbolic link."""
        p = self.root
        for part in PurePosixPath(name).parts:
            p = p / part
            if p.is_symlink():
                return True
        return False

    def _path(self, name: str) -> Path | None:
        if member_name_unsafe(name) or self._linked(name):
            return None
        p = (self.root / name).resolve()
        return p if p.is_relative_to(self.root) and p.is_file() else None

    def names(self) -> Iterator[str]:
        for p in sorted(self.root.rglob("*")):
            name = p.relative_to(self.root).as_posix()
            if self._path(name) is not None:
                yield name

    def exists(self, name: str) -> bool:
        return self._path(name) is not None

    def missing_reason(self, name: str) -> str:
        if not member_name_unsafe(name) and self._linked(name):
            return f"image file {quoted(name)} is a symbolic link; copy the file itself into the folder"
        return super().missing_reason(name)

    def open(self, name: str):
        p = self._path(name)
        if p is None:
            raise ArchiveRejected([self.missing_reason(name)])
        return open(p, "rb")

    def read(self, name: str) -> bytes:
        p = self._path(name)
        if p is None:
            raise ArchiveRejected([self.missing_reason(name)])
        size = p.stat().st_size
        if size > settings.ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES:
            raise ArchiveRejected([f"{name} is {size:,} bytes, over ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES"])
        return p.read_bytes()


def source_open(path: Path) -> FileSource:
    """A reader for a folder or a .zip archive (ArchiveRejected when it is neither or breaks a limit)."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise ArchiveRejected([f"{path} does not exist"])
    return ZipSource(path)


def image_check(name: str, data: bytes) -> CheckedImage | str:
    """Decode the whole image: its sha256, format and size, or a sentence saying what is wrong."""
    name = quoted(name)[1:-1] if len(name) > 100 else name
    if not data:
        return f"{name} is an empty file"
    max_pixels = settings.ARENA_MAX_IMAGE_PIXELS
    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            width, height = im.size
            if fmt not in PIL_FORMATS:
                return f"{name} is a {fmt} image; PNG, JPEG and WebP are accepted"
            if width * height > max_pixels:
                return (
                    f"{name} is {width}×{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (ARENA_MAX_IMAGE_PIXELS); refused as a possible decompression bomb"
                )
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                return f"{name} is animated ({frames} frames); upload a still image"
            im.load()  # decode every pixel: truncated or corrupt data fails here
    except PIL.Image.DecompressionBombError as exc:
        # Pillow refuses far larger canvases before we see their size; report them the same way.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        return (
            f"{name} is {size}, over the limit of {max_pixels:,} (ARENA_MAX_IMAGE_PIXELS); "
            "refused as a possible decompression bomb"
        )
    except PIL.UnidentifiedImageError:
        return f"{name} is not an image (Pillow cannot identify it)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"{name} is truncated or corrupt ({exc})"
    return CheckedImage(sha256_hex(data), PIL_FORMATS[fmt], width, height)
