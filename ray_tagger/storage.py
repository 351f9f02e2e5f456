"""Where shards and run folders live: a local folder or an object store, behind one path API.

:func:`location` turns what the user typed into a path object: a :class:`pathlib.Path` for a
local folder (or a shared mount), an :class:`ObjectPath` for a URI such as
``s3://bucket/runs/demo`` or ``gs://bucket/shards``. ``ObjectPath`` offers the part of
``pathlib``'s API the stages use (``/``, ``name``, ``parent``, ``exists``, ``is_file``,
``read_text``, ``write_bytes``, ``open``, ``glob``, …) on top of :mod:`pyarrow.fs`, so every
stage reads and writes through the same calls whichever kind of place it was given, and Ray
Data, Parquet and Ray Train take the URI string as they are.

Credentials and endpoints come from the environment of every Ray node, as for any pyarrow or
Ray storage (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or an instance role,
``AWS_ENDPOINT_URL`` for an S3-compatible server, ``GOOGLE_APPLICATION_CREDENTIALS``).

Object stores have no rename and no append: a file is written whole when its stream closes,
``open(mode="a")`` reads the object and writes it back with the new text (fine for the small
logs and metric files we append to), and prepare commits a shard folder by writing its
manifest last instead of renaming a staging folder.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import re
import shutil
from pathlib import Path, PurePosixPath

OBJECT_STORES = ("s3", "gs", "gcs")
"""URI schemes of the object stores ray-tagger writes shards and run folders to (pyarrow's S3 and GCS file systems)."""

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
_FILESYSTEMS: dict[str, object] = {}


def is_uri(text: str | Path) -> bool:
    """Whether ``text`` names an object-store location (``scheme://...``) rather than a local path."""
    return isinstance(text, ObjectPath) or (isinstance(text, str) and _URI.match(text) is not None)


def location(text: "str | Path | ObjectPath") -> "Path | ObjectPath":
    """A local path (``Path``, made absolute) or an object-store URI (``ObjectPath``)."""
    if isinstance(text, ObjectPath):
        return text
    if is_uri(text):
        return ObjectPath(str(text))
    return Path(text).expanduser().resolve()


def remove_tree(path: "Path | ObjectPath") -> None:
    """Delete a folder and everything under it; nothing happens when it is not there."""
    if isinstance(path, ObjectPath):
        path._delete_tree()
    else:
        shutil.rmtree(path, ignore_errors=True)


def tree_bytes(path: "Path | ObjectPath") -> int:
    """Total size of the files under a folder (0 when it is not there); one listing on an object store."""
    if isinstance(path, ObjectPath):
        return path._tree_bytes()
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


class ObjectPath:
    """A file or folder in an object store, named by its URI (``s3://bucket/key/...``).

    Pickles as its URI: a Ray task or Train worker that receives one opens its own connection
    (one file system per bucket and process). Folders are key prefixes: a folder exists when an
    object lies under it, and ``mkdir`` only writes the marker that pyarrow uses for empty ones.
    """

    __slots__ = ("uri",)

    def __init__(self, uri: str):
        m = _URI.match(uri)
        if m is None:
            raise ValueError(f"{uri!r} is not a URI (scheme://bucket/key)")
        parts = [p for p in m.group(2).split("/") if p]
        if not parts:
            raise ValueError(f"{uri}: names no bucket")
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"{uri}: '.' and '..' have no meaning in an object-store key")
        self.uri = f"{m.group(1).lower()}://{'/'.join(parts)}"

    # -- naming -------------------------------------------------------------------------------

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"ObjectPath({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ObjectPath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: "ObjectPath") -> bool:
        return self.uri < other.uri

    def __reduce__(self):
        return ObjectPath, (self.uri,)

    def __truediv__(self, part: "str | PurePosixPath") -> "ObjectPath":
        return ObjectPath(f"{self.uri}/{part}")

    @property
    def _scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def _key(self) -> str:
        """``bucket/key``: the path pyarrow's file system takes."""
        return self.uri.split("://", 1)[1]

    @property
    def name(self) -> str:
        return self._key.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> "ObjectPath":
        key = self._key
        return self if "/" not in key else ObjectPath(f"{self._scheme}://{key.rsplit('/', 1)[0]}")

    def with_name(self, name: str) -> "ObjectPath":
        return self.parent / name

    def relative_to(self, other: "ObjectPath") -> PurePosixPath:
        if not self.uri.startswith(other.uri + "/"):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.uri[len(other.uri) + 1:])

    def resolve(self) -> "ObjectPath":
        return self

    absolute = expanduser = resolve

    # -- the file system ------------------------------------------------------------------------

    @property
    def _fs(self):
        """The pyarrow file system of this bucket, opened once per process."""
        import pyarrow.fs

        bucket = f"{self._scheme}://{self._key.split('/', 1)[0]}"
        fs = _FILESYSTEMS.get(bucket)
        if fs is None:
            fs, _ = pyarrow.fs.FileSystem.from_uri(bucket)
            _FILESYSTEMS[bucket] = fs
        return fs

    def _info(self):
        return self._fs.get_file_info(self._key)

    def exists(self) -> bool:
        import pyarrow.fs

        return self._info().type != pyarrow.fs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs

        return self._info().type == pyarrow.fs.FileType.File

    def is_dir(self) -> bool:
        import pyarrow.fs

        return self._info().type == pyarrow.fs.FileType.Directory

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        if not exist_ok and self.exists():
            raise FileExistsError(f"{self}: exists")
        self._fs.create_dir(self._key, recursive=True)

    def read_bytes(self) -> bytes:
        try:
            with self._fs.open_input_stream(self._key) as f:
                return f.read()
        except FileNotFoundError:  # one request, not a look-up before the read
            raise FileNotFoundError(f"{self}: no such file") from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        with self._fs.open_output_stream(self._key) as f:
            f.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        self.write_bytes(text.encode(encoding))
        return len(text)

    def open(self, mode: str = "r", buffering: int = -1, encoding: str | None = "utf-8", errors: str | None = None,
             newline: str | None = None):
        """A file object: read modes hold the whole object in memory; ``w``/``a`` write it on close."""
        binary = "b" in mode
        kind = mode.replace("b", "").replace("t", "")
        if kind == "r":
            data = self.read_bytes()
            return io.BytesIO(data) if binary else io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors=errors,
                                                                    newline=newline)
        if kind not in ("w", "a"):
            raise ValueError(f"{self}: mode {mode!r} is not supported on object storage")
        start = b""
        if kind == "a":
            with contextlib.suppress(FileNotFoundError):
                start = self.read_bytes()
        buffer = _Upload(self, start)
        return buffer if binary else io.TextIOWrapper(buffer, encoding=encoding, errors=errors, newline=newline,
                                                      write_through=True)

    def _listing(self, recursive: bool = False) -> list:
        """pyarrow ``FileInfo`` of what is under this folder (one request; empty when it is not there)."""
        import pyarrow.fs

        return self._fs.get_file_info(pyarrow.fs.FileSelector(self._key, recursive=recursive, allow_not_found=True))

    def iterdir(self):
        return iter(sorted(ObjectPath(f"{self._scheme}://{i.path}") for i in self._listing()))

    def glob(self, pattern: str) -> list["ObjectPath"]:
        """The children whose names match ``pattern`` (one level, ``fnmatch`` rules)."""
        if "/" in pattern:
            raise ValueError("ObjectPath.glob matches one level of names; use rglob for a tree")
        return [p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)]

    def rglob(self, pattern: str) -> list["ObjectPath"]:
        """Everything under this folder whose name matches ``pattern``."""
        found = (ObjectPath(f"{self._scheme}://{i.path}") for i in self._listing(recursive=True))
        return sorted(p for p in found if fnmatch.fnmatchcase(p.name, pattern))

    def _tree_bytes(self) -> int:
        import pyarrow.fs

        return sum(i.size for i in self._listing(recursive=True) if i.type == pyarrow.fs.FileType.File)

    def unlink(self, missing_ok: bool = False) -> None:
        if not self.is_file():
            if missing_ok:
                return
            raise FileNotFoundError(f"{self}: no such file")
        self._fs.delete_file(self._key)

    def _delete_tree(self) -> None:
        if self.is_dir():
            self._fs.delete_dir(self._key)
        elif self.is_file():
            self._fs.delete_file(self._key)


class _Upload(io.BytesIO):
    """A binary buffer that becomes the object's content when it is closed."""

    def __init__(self, target: ObjectPath, start: bytes):
        super().__init__(start)
        self.seek(0, io.SEEK_END)
        self._target = target

    def close(self) -> None:
        if not self.closed:
            self._target.write_bytes(self.getvalue())
        super().close()
