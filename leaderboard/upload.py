"""Receive an HTTP submission: a streamed multipart body written to disk under limits, and safe archive unpacking.

Used by `leaderboard.service`; everything here treats the request as hostile:

* `receive_form` parses ``multipart/form-data`` as it streams in (python-multipart's push parser), writing the
  file parts straight to fixed names in a fresh folder (never the client's file name) and counting every byte:
  the body, each field, each file, the number of parts, the header sizes, are bounded *while reading*, so an
  over-long upload is cut off at the limit rather than spooled first. A body that ends before the closing
  boundary (a client or server that went away mid-upload) is refused: an incomplete file is never used.
* `unpack_archive` extracts a ``.tar``, ``.tar.gz`` or ``.zip`` of a checkpoint folder: only regular files and
  folders (no symbolic or hard links, devices, FIFOs, sparse files), no absolute paths, no ``..``, no drive
  letters or backslashes, at most `UploadLimits.max_members` members, `UploadLimits.max_depth` levels, and
  `UploadLimits.max_unpacked_bytes` in all, counted on the bytes actually extracted (a zip's declared sizes
  are not trusted). A gzip stream is inflated to disk under the same bound before the tar is read, and the tar's
  own headers are checked first, so its extended headers (which tarfile reads into memory) are small.
* `submission_folder` turns the received parts into a folder `leaderboard.validate` can open: the archive's
  contents, or the ``weights`` + ``meta`` pair as ``model.safetensors`` + ``meta.json``.

    form = await receive_form(request.headers, request.stream(), folder, UploadLimits())
    path = submission_folder(form, folder / "unpacked", UploadLimits())
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from leaderboard.validate import SubmissionError

#: the form's text fields and file parts; anything else is refused
FIELDS = ("task", "name", "train_examples", "train_augmentations")
FILES = ("archive", "weights", "meta")


class UploadError(Exception):
    """A request that is not an acceptable upload; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on one HTTP submission (per deployment: ``python -m leaderboard serve --max-upload-mib``)."""

    max_body_bytes: int = 256 << 20  # the whole request body
    max_field_bytes: int = 1024  # one text field
    max_parts: int = 8  # fields and files together
    max_header_bytes: int = 4096  # the headers of one part
    max_members: int = 64  # archive members (a checkpoint folder holds two files)
    max_depth: int = 8  # folder levels inside an archive
    max_unpacked_bytes: int = 256 << 20  # everything extracted from an archive
    max_name_bytes: int = 255  # one path component


@dataclass
class Form:
    """A received form: text fields, and file parts as ``name -> (path, client's file name, bytes)``."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[Path, str, int]] = field(default_factory=dict)
    body_bytes: int = 0


class _Receiver:
    """python-multipart's callbacks: headers parsed per part, data sent to memory (fields) or a file (files)."""

    def __init__(self, folder: Path, limits: UploadLimits):
        self.folder, self.limits, self.form = folder, limits, Form()
        self.parts, self.ended = 0, False
        self._header_name = self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._name: str | None = None
        self._data = bytearray()
        self._file = None
        self._file_bytes = 0

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise UploadError(413, f"more than {self.limits.max_parts} form parts")
        self._headers, self._header_bytes, self._name, self._data, self._file_bytes = {}, 0, None, bytearray(), 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._count_header(end - start)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._count_header(end - start)

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            raise UploadError(413, f"a form part's headers exceed {self.limits.max_header_bytes:,} bytes")

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        raw = options.get(b"name")
        if disposition != b"form-data" or raw is None:
            raise UploadError(400, "every form part needs a Content-Disposition: form-data header with a name")
        name = raw.decode("utf-8", "replace")
        if name not in FIELDS and name not in FILES:
            raise UploadError(422, f"unknown form field {ascii(name)[:60]}; expected {', '.join(FIELDS + FILES)}")
        if name in self.form.fields or name in self.form.files:
            raise UploadError(422, f"the form field {name!r} is sent twice")
        self._name = name
        if name in FILES:
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            path = self.folder / f"part-{name}"
            self._file = open(path, "xb")  # closed in on_part_end, or by close()
            self.form.files[name] = (path, filename[:200], 0)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._file is not None:
            self._file.write(data[start:end])
            self._file_bytes += n
        else:
            if len(self._data) + n > self.limits.max_field_bytes:
                raise UploadError(413, f"the form field {self._name!r} exceeds {self.limits.max_field_bytes:,} bytes")
            self._data += data[start:end]

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            path, filename, _ = self.form.files[self._name]
            self.form.files[self._name] = (path, filename, self._file_bytes)
            self._file = None
        else:
            try:
                self.form.fields[self._name] = self._data.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(422, f"the form field {self._name!r} is not UTF-8") from None

    def on_end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_form(headers: Mapping[str, str], stream: AsyncIterator[bytes], folder: Path,
                       limits: UploadLimits) -> Form:  # fmt: skip
    """Parse a ``multipart/form-data`` request body into ``folder`` (see the module docstring).

    Raises:
        UploadError: a body that is not such a form, too large, malformed or incomplete.
    """
    ctype, options = parse_options_header(headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(415, "send the submission as multipart/form-data (an archive, or weights + meta files)")
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(400, "a malformed Content-Length header")
        if int(declared) > limits.max_body_bytes:
            n = int(declared)
            raise UploadError(413, f"the upload is {n:,} bytes, over the limit of {limits.max_body_bytes:,}")
    receiver = _Receiver(folder, limits)
    callbacks = {n: getattr(receiver, n) for n in ("on_part_begin", "on_part_data", "on_part_end", "on_header_field",
                 "on_header_value", "on_header_end", "on_headers_finished", "on_end")}  # fmt: skip
    try:
        parser = MultipartParser(options[b"boundary"], callbacks, max_header_size=limits.max_header_bytes)
    except (ValueError, MultipartParseError) as e:
        raise UploadError(400, f"bad multipart boundary ({str(e)[:80]})") from None
    total = 0
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > limits.max_body_bytes:
                raise UploadError(413, f"the upload exceeds the limit of {limits.max_body_bytes:,} bytes")
            if receiver.ended:
                continue  # an epilogue after the closing boundary is ignored (and counted)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as e:
        first = str(e).splitlines()[0][:120] if str(e) else "parse error"
        raise UploadError(400, f"malformed multipart body ({first})") from None
    finally:
        receiver.close()
    if not receiver.ended:
        raise UploadError(400, "the upload ended before the closing multipart boundary (incomplete body)")
    receiver.form.body_bytes = total
    return receiver.form


# ---- archives ------------------------------------------------------------------------------------------------
def _safe_parts(name: str, limits: UploadLimits) -> tuple[str, ...]:
    """The path components of an archive member, refusing anything that could land outside the folder."""
    shown = ascii(name)[:120]
    if "\\" in name or "\x00" in name:
        raise SubmissionError(f"archive member {shown}: backslashes and NUL are not allowed in names")
    if name.startswith("/"):
        raise SubmissionError(f"archive member {shown}: absolute paths are not allowed")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts:
        raise SubmissionError(f"archive member {shown}: an empty name")
    if ".." in parts:
        raise SubmissionError(f"archive member {shown}: '..' is not allowed in paths")
    if len(parts[0]) >= 2 and parts[0][1] == ":":
        raise SubmissionError(f"archive member {shown}: drive letters are not allowed")
    if len(parts) > limits.max_depth:
        raise SubmissionError(f"archive member {shown}: nested deeper than {limits.max_depth} folders")
    if any(len(p.encode("utf-8", "replace")) > limits.max_name_bytes for p in parts):
        raise SubmissionError(f"archive member {shown}: a name longer than {limits.max_name_bytes} bytes")
    return parts


class _Budget:
    def __init__(self, limits: UploadLimits):
        self.limits, self.members, self.bytes = limits, 0, 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise SubmissionError(f"the archive has more than {self.limits.max_members} members")

    def add(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_unpacked_bytes:
            raise SubmissionError(f"the archive unpacks to more than {self.limits.max_unpacked_bytes:,} bytes")


def _make_dirs(dest: Path, parts: tuple[str, ...]) -> Path:
    """Create ``dest/parts...`` folders (refusing a path through a file); every folder here is our own."""
    d = dest
    for p in parts:
        d = d / p
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise SubmissionError(f"archive member {ascii('/'.join(parts))[:120]}: a path through a file")
        d.mkdir(exist_ok=True)
    return d


def _write_member(dest: Path, parts: tuple[str, ...], src, budget: _Budget, declared: int | None) -> None:
    folder = _make_dirs(dest, parts[:-1])
    try:
        out = open(folder / parts[-1], "xb")
    except FileExistsError:
        raise SubmissionError(f"archive member {ascii('/'.join(parts))[:120]}: appears twice") from None
    except IsADirectoryError:
        raise SubmissionError(f"archive member {ascii('/'.join(parts))[:120]}: a file over a folder") from None
    written = 0
    with out:
        while chunk := src.read(1 << 20):
            budget.add(len(chunk))
            written += len(chunk)
            if declared is not None and written > declared:
                raise SubmissionError(f"archive member {ascii('/'.join(parts))[:120]}: larger than it declares")
            out.write(chunk)


def _gunzip(src: Path, dest: Path, limit: int) -> Path:
    """Inflate a gzip file to ``dest``, stopping at ``limit`` bytes (a decompression bomb stops there)."""
    total = 0
    with gzip.open(src, "rb") as fin, open(dest, "xb") as out:
        while chunk := fin.read(1 << 20):
            total += len(chunk)
            if total > limit:
                raise SubmissionError(f"the archive unpacks to more than {limit:,} bytes")
            out.write(chunk)
    return dest


def _tar_size(field_bytes: bytes) -> int:
    if field_bytes[:1] in (b"\x80", b"\xff"):  # GNU base-256
        n = int.from_bytes(field_bytes[1:], "big")
        return -n if field_bytes[:1] == b"\xff" else n
    text = field_bytes.rstrip(b"\x00 ").strip()
    return int(text, 8) if text else 0


def _check_tar_headers(path: Path, limits: UploadLimits) -> None:
    """Walk the raw 512-byte headers first: a bounded member count, and small extended/long-name headers.

    tarfile reads an extended header into memory whole, so its size is checked before tarfile sees it.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset, blocks = 0, 0
        while offset + 512 <= size:
            fh.seek(offset)
            head = fh.read(512)
            if head == bytes(512):
                return
            blocks += 1
            if blocks > 4 * limits.max_members + 4:  # members, each with at most a few extension headers
                raise SubmissionError(f"the archive has more than {limits.max_members} members")
            try:
                n = _tar_size(head[124:136])
            except ValueError:
                raise SubmissionError("not a readable tar archive (a malformed header)") from None
            if n < 0:
                raise SubmissionError("not a readable tar archive (a negative size)")
            if head[156:157] in (b"x", b"g", b"L", b"K") and n > 64 << 10:
                raise SubmissionError("the archive has an extended header over 64 KiB")
            offset += 512 + (n + 511) // 512 * 512


def _unpack_tar(path: Path, dest: Path, limits: UploadLimits, budget: _Budget) -> None:
    _check_tar_headers(path, limits)
    with tarfile.open(path, mode="r:") as tf:
        while (m := tf.next()) is not None:
            budget.member()
            parts = _safe_parts(m.name, limits)
            shown = ascii(m.name)[:120]
            if m.issym() or m.islnk():
                raise SubmissionError(f"archive member {shown}: links are not accepted")
            if m.isdir():
                _make_dirs(dest, parts)
            elif m.isreg() and not m.issparse():
                if m.size > limits.max_unpacked_bytes - budget.bytes:
                    raise SubmissionError(f"the archive unpacks to more than {limits.max_unpacked_bytes:,} bytes")
                _write_member(dest, parts, tf.extractfile(m), budget, m.size)
            else:
                raise SubmissionError(f"archive member {shown}: only regular files and folders are accepted")


def _unpack_zip(path: Path, dest: Path, limits: UploadLimits, budget: _Budget) -> None:
    with open(path, "rb") as fh:
        # The central directory is read into memory whole by ZipFile: bound its declared size and count first.
        end = zipfile._EndRecData(fh)  # (private, but the stdlib's own parser of the end record)
        if end is None:
            raise SubmissionError("not a readable zip archive (no end record)")
        if end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members:
            raise SubmissionError(f"the archive has more than {limits.max_members} members")
        if end[zipfile._ECD_SIZE] > limits.max_members * (512 + limits.max_depth * limits.max_name_bytes):
            raise SubmissionError("the zip's central directory is larger than its members need")
        with zipfile.ZipFile(fh) as zf:
            for info in zf.infolist():
                budget.member()
                parts = _safe_parts(info.filename, limits)
                shown = ascii(info.filename)[:120]
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise SubmissionError(f"archive member {shown}: links are not accepted")
                if info.flag_bits & 0x1:
                    raise SubmissionError(f"archive member {shown}: encrypted members are not accepted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise SubmissionError(f"archive member {shown}: only stored or deflated members are accepted")
                if info.is_dir():
                    _make_dirs(dest, parts)
                    continue
                if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    raise SubmissionError(f"archive member {shown}: only regular files and folders are accepted")
                if info.file_size > limits.max_unpacked_bytes - budget.bytes:
                    raise SubmissionError(f"the archive unpacks to more than {limits.max_unpacked_bytes:,} bytes")
                with zf.open(info) as src:
                    _write_member(dest, parts, src, budget, info.file_size)


def unpack_archive(path: Path, dest: Path, limits: UploadLimits) -> Path:
    """Extract a ``.tar``, ``.tar.gz`` or ``.zip`` into the new folder ``dest`` (see the module docstring).

    Raises:
        SubmissionError: an unreadable or unsafe archive (the one-line reason).
    """
    dest.mkdir(parents=True)
    budget = _Budget(limits)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic[:2] == b"\x1f\x8b":
            plain = _gunzip(path, path.with_name(path.name + ".tar"), limits.max_unpacked_bytes + (1 << 20))
            _unpack_tar(plain, dest, limits, budget)
        elif magic == b"PK\x03\x04" or magic == b"PK\x05\x06":
            _unpack_zip(path, dest, limits, budget)
        elif _looks_like_tar(path):
            _unpack_tar(path, dest, limits, budget)
        else:
            raise SubmissionError("the archive is not a .tar, .tar.gz or .zip file")
    except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, gzip.BadGzipFile,
            struct.error, UnicodeError, ValueError) as e:  # fmt: skip
        if isinstance(e, SubmissionError):
            raise
        raise SubmissionError(f"not a readable archive ({type(e).__name__})") from None
    return dest


def _looks_like_tar(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512)
    return len(head) == 512 and head[257:262] == b"ustar"


def _descend(folder: Path) -> Path:
    """An archive of ``my-run/...`` holds the checkpoint one level down: follow single folders (not links)."""
    for _ in range(8):
        entries = list(os.scandir(folder))
        if len(entries) == 1 and entries[0].is_dir(follow_symlinks=False):
            folder = Path(entries[0].path)
        else:
            break
    return folder


def submission_folder(form: Form, dest: Path, limits: UploadLimits) -> Path:
    """The folder to validate: the archive's contents, or the weights + meta pair (see the module docstring).

    Raises:
        UploadError: the wrong combination of file parts (422).
        SubmissionError: an unsafe or unreadable archive.
    """
    files = form.files
    if "archive" in files and ("weights" in files or "meta" in files):
        raise UploadError(422, "send either an archive or the weights + meta files, not both")
    if "archive" in files:
        return _descend(unpack_archive(files["archive"][0], dest, limits))
    if "weights" not in files:
        raise UploadError(422, "no file: send an archive of the checkpoint folder, or weights (+ meta) files")
    dest.mkdir(parents=True)
    os.replace(files["weights"][0], dest / "model.safetensors")
    if "meta" in files:
        os.replace(files["meta"][0], dest / "meta.json")
    return dest
