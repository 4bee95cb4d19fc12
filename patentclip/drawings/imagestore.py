"""Where drawing images live once ingested, addressed by URI.

``LocalImageStore`` keeps them in a folder (``file://`` URIs), with each patent's grant
record beside its drawings. Callers use only the methods below, so an S3-compatible bucket
can stand in without touching them: ``put`` returns a URI, ``get`` raises NotFoundError for
a missing object (not retriable) and ImageStoreUnavailableError for a failed read
(retriable); ``put_grant``/``get_grant``/``grant_patents`` keep the grant records that
GetPatent and the trainer read.
"""

from __future__ import annotations

import errno
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from google.protobuf.message import DecodeError

from patentclip.codec.events import REASON_INVALID_GRANT, grant_from_proto, grant_to_proto
from patentclip.errors import (
    EventDecodeError,
    ImageStoreUnavailableError,
    InvalidInputError,
    NotFoundError,
)
from patentclip.v1 import grant_pb2 as pb

MAX_PATH_CHARS = 1_024
# Errors that a URI causes, not the store: retrying cannot help (ENAMETOOLONG: a part over
# 255 bytes; ENOTDIR: a path through a file; ELOOP: a symlink loop; EACCES: not ours to read).
_URI_FAULTS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EINVAL,
                         errno.EACCES, errno.EPERM})

if TYPE_CHECKING:
    from patentclip.grants.model import Grant
    from patentclip.grants.reader import GrantDocument


GRANT_RECORD = "grant.pb"  # the Grant protobuf kept beside a patent's drawings
# <root>/cited-by/<cited patent>/<citing patent>.<category>: empty markers written with each
# grant record, so "cited by" is a folder listing (idempotent: a replay writes the same). A
# folder of its own, lower case, so no patent folder exists for a patent not in the store.
CITED_BY = "cited-by"
UNSTATED = "unstated"  # a marker's category when the citation states none (a name needs one)


def grant_record(grant: Grant) -> bytes:
    """The serialized Grant stored with its drawings, so GetPatent can answer in full."""
    return grant_to_proto(grant).SerializeToString(deterministic=True)


def grant_from_record(data: bytes) -> Grant:
    """The grant a ``grant_record`` holds; EventDecodeError when it is no readable record."""
    message = pb.Grant()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise EventDecodeError(REASON_INVALID_GRANT, f"not a Grant record: {exc}") from exc
    return grant_from_proto(message)


class LocalImageStore:
    """Drawing images under ``root/<patent>/<file name>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def put(self, patent: str, file_name: str, data: bytes) -> str:
        """Store bytes (idempotent: identical content is left alone); return the URI."""
        path = self._path(patent, file_name)
        if not (path.is_file() and path.stat().st_size == len(data)
                and path.read_bytes() == data):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
        return path.as_uri()

    def uri_for(self, patent: str, file_name: str) -> str:
        """The URI ``put`` returns for this name (whether or not it exists yet)."""
        return self._path(patent, file_name).as_uri()

    def get(self, uri: str) -> bytes:
        """The bytes at ``uri``. A URI that cannot name an image of this store (not
        file://, outside the root, a NUL, a name too long, a path through a file) is
        InvalidInputError, and a missing one NotFoundError: the URI's fault, never retried.
        Only a read that fails on the store's side (I/O, a stale mount) is retriable."""
        shown = uri[:200]
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise InvalidInputError(f"{shown}: not a file:// URI")
        text = unquote(parsed.path)
        if "\x00" in text or len(text) > MAX_PATH_CHARS:
            raise InvalidInputError(f"{shown}: not a path of this image store (a NUL, or "
                                    f"over {MAX_PATH_CHARS} characters)")
        try:
            path = Path(text).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, say
            raise InvalidInputError(f"{shown}: not a path of this image store ({exc})") from exc
        if self.root not in path.parents:
            raise InvalidInputError(f"{shown}: outside the image store {self.root}")
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFoundError(f"{shown}: no such image") from exc
        except OSError as exc:
            if exc.errno in _URI_FAULTS:
                raise InvalidInputError(f"{shown}: cannot be an image of this store "
                                        f"({exc.strerror})") from exc
            # a slow or failing disk/NFS mount: retriable
            raise ImageStoreUnavailableError(f"{shown}: image store read failed: {exc}") from exc

    def put_grant(self, grant: Grant) -> str:
        """Store a grant's record (its fields and sheets, as events carry them), and mark
        each US patent it cites as cited by it."""
        uri = self.put(grant.patent_number, GRANT_RECORD, grant_record(grant))
        for citation in grant.citations:
            if citation.us_patent and citation.us_patent != grant.patent_number:
                category = citation.category or UNSTATED
                marker = self._cited_by(citation.us_patent) / \
                    f"{grant.patent_number}.{category}"
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch(exist_ok=True)
        return uri

    def has_grant(self, patent: str) -> bool:
        """Whether the store holds this patent's grant record (the corpus holds it)."""
        return self._path(patent, GRANT_RECORD).is_file()

    def cited_by(self, patent: str) -> list[tuple[str, str]]:
        """(citing patent, category) of the stored grants that cite ``patent``, in patent
        order; categories as ``Citation.category`` ("" when the XML gave none)."""
        folder = self._cited_by(patent)
        if not folder.is_dir():
            return []
        markers = (marker.name.split(".", 1) for marker in folder.iterdir()
                   if "." in marker.name)
        return sorted((citing, "" if category == UNSTATED else category)
                      for citing, category in markers)

    def get_grant(self, patent: str) -> Grant:
        """A patent's stored grant record: NotFoundError when there is none, EventDecodeError
        when it cannot be read."""
        return grant_from_record(self.get(self.uri_for(patent, GRANT_RECORD)))

    def grant_patents(self) -> list[str]:
        """The patents with a grant record, in patent order (NotFoundError: no store yet)."""
        if not self.root.is_dir():
            raise NotFoundError(f"{self.root}: image store folder does not exist (nothing "
                                "ingested yet: run `patentclip index` or the embedder first)")
        return sorted(record.parent.name for record in self.root.glob(f"*/{GRANT_RECORD}"))

    def _cited_by(self, patent: str) -> Path:
        return self.root / CITED_BY / self._path(patent, GRANT_RECORD).parent.name

    def _path(self, patent: str, file_name: str) -> Path:
        for part in (patent, file_name):
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", part):
                raise InvalidInputError(f"unsafe image name: {part!r}")
        return self.root / patent / file_name


def store_grant(images: LocalImageStore, document: GrantDocument) -> Grant:
    """Put a grant's drawings and its record (``grant.pb``, read by GetPatent) into the image
    store. Returns the grant as events and rows describe it: the sheets whose drawing was
    in the source, each with its image URI."""
    grant = document.grant
    sheets = tuple(replace(sheet, image_uri=images.put(grant.patent_number, sheet.file_name,
                                                       document.images[sheet.file_name]))
                   for sheet in grant.sheets if sheet.file_name in document.images)
    stored = replace(grant, sheets=sheets)
    images.put_grant(stored)
    return stored
