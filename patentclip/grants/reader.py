"""Read USPTO design grants the way they arrive.

Sources (``GrantReader.read`` picks by what the path is):

* a weekly with-images bundle ``I20YYMMDD.tar`` holding ``DESIGN/USD0xxxxxx-YYYYMMDD.ZIP``
  members, each zip holding the XML and its TIFF sheets;
* a single per-patent ``.ZIP``;
* a folder of per-patent folders (``USD0907292-20210105/USD0907292-20210105.XML`` + TIFs),
  a single per-patent folder, or a folder of per-patent zips;
* the text-only ``ipgYYMMDD.zip`` (or its ``.xml``): concatenated XML documents, no images.

Utility, plant and reissue documents are skipped and counted. A broken document is
recorded in :class:`ReadReport` with its file name and reason, and reading goes on.
Archives are bounded (:class:`ArchiveLimits`); each document is parsed by
``patentclip.grants.xml_parser``.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from patentclip.errors import (
    GrantParseError,
    InvalidInputError,
    NotADesignGrantError,
    UnsafeArchiveError,
)
from patentclip.grants.model import (
    Grant,
    ReadReport,
)
from patentclip.grants.xml_parser import parse_grant_xml

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds that stop archive bombs before they fill memory."""

    max_members: int = 200_000
    max_member_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 64 * 1024 * 1024 * 1024


@dataclass
class GrantDocument:
    """A parsed grant plus the bytes of the drawing sheets that were found."""

    grant: Grant
    images: dict[str, bytes] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sources


class GrantReader:
    """Iterate design grants from any supported source; collect problems in ``report``."""

    def __init__(self, limits: ArchiveLimits | None = None, load_images: bool = True) -> None:
        self.limits = limits or ArchiveLimits()
        self.load_images = load_images
        self.report = ReadReport()

    def read(self, path: str | Path) -> Iterator[GrantDocument]:
        """Yield every readable design grant under ``path``. Raises only if ``path`` is unusable."""
        path = Path(path)
        if not path.exists():
            raise InvalidInputError(f"{path}: no such file or folder")
        if path.is_dir():
            yield from self._read_folder(path)
        elif path.suffix.lower() == ".tar":
            yield from self._read_tar(path)
        elif path.suffix.lower() == ".zip":
            yield from self._read_zip_file(path)
        elif path.suffix.lower() == ".xml":
            yield from self._read_concatenated(path.read_bytes(), str(path), None)
        else:
            raise InvalidInputError(f"{path}: unsupported source (expected a .tar bundle, a .zip, "
                                    "an .xml file or a folder)")

    # -- folders

    def _read_folder(self, folder: Path) -> Iterator[GrantDocument]:
        xmls = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
        if xmls:
            for xml in xmls:
                images = _FolderImages(folder) if self.load_images else None
                yield from self._parse(xml.read_bytes(), str(xml), images)
            return
        for child in sorted(folder.iterdir()):
            if child.is_dir():
                yield from self._read_folder(child)
            elif child.suffix.lower() in (".zip", ".tar"):
                yield from self.read(child)

    # -- archives

    def _read_tar(self, path: Path) -> Iterator[GrantDocument]:
        try:
            tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError) as exc:
            raise InvalidInputError(f"{path}: not a readable tar bundle ({exc})") from exc
        total = 0
        with tar:
            for count, member in enumerate(self._tar_members(tar, path)):
                source = f"{path.name}!{member.name}"
                if count >= self.limits.max_members:
                    self._fail(source, f"bundle has more than {self.limits.max_members} members")
                    return
                if not member.name.lower().endswith(".zip"):
                    continue
                try:
                    _check_member_name(member.name)
                    if not member.isfile():
                        raise UnsafeArchiveError(f"member is a link or special file: {member.name}")
                    if not _is_design_zip_name(member.name):
                        self.report.skip(f"not a design grant ({_kind_from_name(member.name)})")
                        continue
                    total += member.size
                    self._check_sizes(member.size, total)
                    data = _read_tar_member(tar, member, self.limits.max_member_bytes)
                except (UnsafeArchiveError, InvalidInputError) as exc:
                    self._fail(source, str(exc))
                    continue
                yield from self._read_zip_bytes(data, source)

    def _tar_members(self, tar: tarfile.TarFile, path: Path) -> Iterator[tarfile.TarInfo]:
        """The tar's members; a truncated or corrupt tail is reported, and what came before
        it is still read."""
        while True:
            try:
                member = tar.next()
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                self._fail(path.name, f"tar bundle is truncated or corrupt after "
                           f"{len(tar.members)} members ({exc})")
                return
            if member is None:
                return
            yield member

    def _read_zip_file(self, path: Path) -> Iterator[GrantDocument]:
        yield from self._read_zip_bytes(path.read_bytes(), path.name)

    def _read_zip_bytes(self, data: bytes, source: str) -> Iterator[GrantDocument]:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
            self._fail(source, f"not a valid zip ({exc})")
            return
        with archive:
            try:
                members = self._zip_members(archive)
            except (UnsafeArchiveError, InvalidInputError) as exc:
                self._fail(source, str(exc))
                return
            xml_names = [n for n in members if n.lower().endswith(".xml")]
            if not xml_names:
                self._fail(source, "zip holds no XML document")
                return
            text_only = posixpath.basename(source).lower().startswith("ipg")
            images = None if text_only or not self.load_images else {
                posixpath.basename(n): n for n in members if not n.lower().endswith(".xml")}
            for xml_name in xml_names:
                try:
                    xml_bytes = self._zip_read(archive, xml_name)
                except InvalidInputError as exc:
                    self._fail(f"{source}!{xml_name}", str(exc))
                    continue
                zip_images = _ZipImages(archive, images, self) if images is not None else None
                yield from self._read_concatenated(xml_bytes, f"{source}!{xml_name}", zip_images)

    def _zip_members(self, archive: zipfile.ZipFile) -> list[str]:
        infos = archive.infolist()
        if len(infos) > self.limits.max_members:
            raise InvalidInputError(f"zip has {len(infos)} members, "
                                    f"limit {self.limits.max_members}")
        total = 0
        names = []
        for info in infos:
            _check_member_name(info.filename)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UnsafeArchiveError(f"member is a symbolic link: {info.filename}")
            if info.is_dir():
                continue
            total += info.file_size
            self._check_sizes(info.file_size, total)
            names.append(info.filename)
        return names

    def _zip_read(self, archive: zipfile.ZipFile, name: str) -> bytes:
        """A member's bytes, at most the member limit whatever its header declares;
        InvalidInputError for a corrupt, encrypted or oddly compressed member."""
        try:
            with archive.open(name) as handle:
                return _read_limited(handle, self.limits.max_member_bytes)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError) as exc:  # RuntimeError: encrypted; NotImplementedError: method
            raise InvalidInputError(f"member {name} cannot be read: {exc}") from exc

    def _check_sizes(self, member_bytes: int, total_bytes: int) -> None:
        if member_bytes > self.limits.max_member_bytes:
            raise InvalidInputError(f"member of {member_bytes} bytes exceeds the limit of "
                                    f"{self.limits.max_member_bytes}")
        if total_bytes > self.limits.max_total_bytes:
            raise InvalidInputError(f"archive exceeds the total limit of "
                                    f"{self.limits.max_total_bytes} bytes")

    # -- documents

    def _read_concatenated(self, data: bytes, source: str, images) -> Iterator[GrantDocument]:
        """One XML document, or an ipg file of many concatenated ones."""
        documents = [d for d in re.split(rb"(?=<\?xml\s)", data) if d.strip()]
        for index, document in enumerate(documents):
            doc_source = source if len(documents) == 1 else f"{source}#doc{index + 1}"
            yield from self._parse(document, doc_source, images)

    def _parse(self, data: bytes, source: str, images) -> Iterator[GrantDocument]:
        try:
            grant = parse_grant_xml(data, source)
        except NotADesignGrantError as exc:
            self.report.skip(exc.reason)
            return
        except GrantParseError as exc:
            self._fail(source, exc.reason)
            return
        document = GrantDocument(grant=grant)
        if images is not None:
            unreadable = []
            for sheet in grant.sheets:
                try:
                    blob = images.get(sheet.file_name)
                except InvalidInputError as exc:
                    unreadable.append(str(exc))
                    blob = None
                if blob is None:
                    document.missing_images.append(sheet.file_name)
                else:
                    document.images[sheet.file_name] = blob
            if document.missing_images:
                self._fail(source, f"missing drawing files: {', '.join(document.missing_images)}"
                           + (f" ({'; '.join(unreadable)})" if unreadable else ""))
        self.report.read += 1
        yield document

    def _fail(self, source: str, reason: str) -> None:
        message = f"{source}: {reason}"
        logger.warning("skipping %s", message)
        self.report.errors.append(message)


class _FolderImages:
    """Image lookup by file name inside one patent folder (case-insensitive)."""

    def __init__(self, folder: Path) -> None:
        self._files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}

    def get(self, name: str) -> bytes | None:
        path = self._files.get(name.lower())
        return path.read_bytes() if path else None


class _ZipImages:
    def __init__(self, archive: zipfile.ZipFile, names: dict[str, str], reader: GrantReader):
        self._archive, self._reader = archive, reader
        self._names = {k.lower(): v for k, v in names.items()}

    def get(self, name: str) -> bytes | None:
        member = self._names.get(name.lower())
        return self._reader._zip_read(self._archive, member) if member else None


def _read_tar_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    try:
        return _read_limited(tar.extractfile(member), limit)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInputError(f"member {member.name} cannot be read: {exc}") from exc


def _check_member_name(name: str) -> None:
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise UnsafeArchiveError(f"member has an absolute path: {name}")
    if ".." in normalized.split("/"):
        raise UnsafeArchiveError(f"member path escapes the archive: {name}")


def _read_limited(handle, limit: int) -> bytes:
    if handle is None:
        raise InvalidInputError("archive member has no data")
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidInputError(f"member expands beyond the limit of {limit} bytes")
    return data


def _is_design_zip_name(name: str) -> bool:
    return posixpath.basename(name).upper().startswith("USD")


def _kind_from_name(name: str) -> str:
    base = posixpath.basename(name).upper()
    for prefix, kind in (("USPP", "plant"), ("USRE", "reissue"), ("USH", "SIR")):
        if base.startswith(prefix):
            return kind
    return "utility" if re.match(r"US\d", base) else "unknown"
