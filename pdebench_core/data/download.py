"""Download published datasets described by source cards, resumably and verified.

A *source card* (``registry/datasets/<name>.yaml``) names a dataset's files with
their URLs and checksums (md5 and/or sha256), plus licence, citation and layout.
:func:`download` fetches the chosen files into a folder:

* a partial file ``<name>.part`` is resumed with an HTTP ``Range`` request (a
  server that ignores ``Range`` makes it start over); dropped connections are
  retried, resuming each time;
* free disk space is checked before any byte is written (against the server's
  ``Content-Length``, or the card's approximate size when the server gives none);
* the checksum is verified before the file is renamed to its final name, so a file
  under its final name is always complete and verified (and is not fetched again).

Some publishers (The Well) give URLs but no checksums. Their cards say
``checksums: unpublished``; :func:`download` fetches such files only when asked to
trust the first download (``--trust-first-download``), records each file's sha256 in
:data:`LOCK_FILE` next to the data, and checks every later download or resume of the
same file against that record.

Cards are looked up in ``$PDEB_REGISTRY/datasets`` (if set), then
``$PDEB_HOME/registry/datasets`` (your own cards), then the ``registry/datasets``
folder that ships with pdeb.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pdebench_core import paths
from pdebench_core.data.integrity import file_identity, remember, remembered
from pdebench_core.diskspace import SPACE_MARGIN, check_free_space, free_bytes, human_bytes, write_failed
from pdebench_core.errors import DataError, UsageError, did_you_mean

CHUNK = 1 << 20
#: Sidecar in the destination folder with the sha256 of files whose publisher gives no
#: checksum, in ``sha256sum`` format (``sha256sum -c SHA256SUMS.lock`` checks it too).
LOCK_FILE = "SHA256SUMS.lock"
#: Suffix of a file being downloaded (resumed from where it stopped).
PARTIAL_SUFFIX = ".part"
_CHECKSUM_POLICIES = ("published", "unpublished")
_LOCK_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")

#: Kept for callers that format sizes through this module.


#: Characters allowed in a card name: it becomes a folder name under the downloads folder.
_SAFE_CARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_URL_SCHEMES = ("http", "https")


def check_file_name(name: str, where: str) -> str:
    """Refuse a file name that could land outside the destination folder.

    A card's file names must be plain relative paths (sub-folders allowed) with no
    ``..`` part, no absolute or drive-qualified path and no backslash; otherwise a shared
    card could write anywhere the user can, e.g. a ``.pth`` file into site-packages.
    """
    if not name.isprintable():  # a line break would forge a line of the checksum record
        raise UsageError(f"{where}: file name {name!r} holds control characters or line breaks; fix the card's "
                         f"'name'")
    parts = name.split("/")
    bad = (not name or "\\" in name or name.startswith(("/", "~"))
           or any(part in ("", ".", "..") for part in parts) or ":" in parts[0])
    if bad:
        raise UsageError(f"{where}: file name '{name}' is not a plain relative name inside the destination; "
                         f"fix the card's 'name' (no '..', no absolute path)")
    if name.endswith(PARTIAL_SUFFIX):
        raise UsageError(f"{where}: file name '{name}' ends in '{PARTIAL_SUFFIX}', the suffix of pdeb's partial "
                         f"downloads; rename it")
    return name


def check_url(url: str, where: str) -> str:
    """Only http and https URLs are fetched (no file://, ftp:// or scheme-less paths)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() not in _URL_SCHEMES or not parts.netloc:
        raise UsageError(f"{where}: url '{url}' is not an http(s) address; fix the card's 'url'")
    return url


@dataclass
class SourceFile:
    """One downloadable file of a card.

    Attributes:
        name: File name on disk.
        url: Where to fetch it.
        md5: Expected MD5 hex digest (PDEBench publishes these).
        sha256: Expected SHA-256 hex digest.
        approx_size: Approximate size in bytes, used for the disk-space check when
            the server does not state the size; ``None`` if unknown.
    """

    name: str
    url: str
    md5: str | None = None
    sha256: str | None = None
    approx_size: int | None = None


@dataclass
class SourceCard:
    """Where a published dataset comes from (one ``registry/datasets`` file).

    Attributes:
        name: Card name users type (``pdeb data download <name>``).
        title: One-line description.
        files: The downloadable files.
        layout: Data layout of the files (a ``format=`` name).
        license: Licence of the data.
        citation: How to cite it (BibTeX).
        homepage: Landing page or DOI.
        source: Who publishes it.
        checksums: ``published`` (every file has an md5 or sha256) or ``unpublished``
            (the publisher gives none; see :func:`download`'s ``trust_first_download``).
        path: The card file it was read from.
    """

    name: str
    title: str = ""
    files: list[SourceFile] = field(default_factory=list)
    layout: str = "auto"
    license: str = ""
    citation: str = ""
    homepage: str = ""
    source: str = ""
    checksums: str = "published"
    path: str = ""

    @property
    def approx_size(self) -> int | None:
        """Sum of the files' approximate sizes, if every one is known."""
        sizes = [f.approx_size for f in self.files]
        return sum(sizes) if sizes and all(s is not None for s in sizes) else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "") -> "SourceCard":
        """Build a card from parsed YAML, checking the required keys."""
        where = path or "source card"
        if not isinstance(data, Mapping) or not data.get("name"):
            raise DataError(f"{where}: a source card needs a 'name'")
        if not _SAFE_CARD_NAME.match(str(data["name"])):
            raise UsageError(f"{where}: card name '{data['name']}' must be letters, digits, '.', '_' or '-' "
                             f"(no path separators or '..'); rename the card")
        checksums = str(data.get("checksums", "published"))
        if checksums not in _CHECKSUM_POLICIES:
            raise DataError(f"{where}: 'checksums: {checksums}' is not one of {', '.join(_CHECKSUM_POLICIES)}; "
                            f"fix the card")
        files = []
        for entry in data.get("files") or []:
            if not isinstance(entry, Mapping) or not entry.get("name") or not entry.get("url"):
                raise DataError(f"{where}: every file needs a 'name' and a 'url'")
            _check_digests(entry, where)
            if not (entry.get("md5") or entry.get("sha256")) and checksums == "published":
                raise DataError(f"{where}: file {entry['name']} has no md5 or sha256 checksum "
                                f"(a card whose publisher gives none says 'checksums: unpublished')")
            check_file_name(str(entry["name"]), where)
            check_url(str(entry["url"]), where)
            size = entry.get("approx_size")
            files.append(SourceFile(name=str(entry["name"]), url=str(entry["url"]), md5=entry.get("md5"),
                                    sha256=entry.get("sha256"), approx_size=int(size) if size else None))
        if not files:
            raise DataError(f"{where}: card '{data['name']}' lists no files")
        return cls(name=str(data["name"]), title=str(data.get("title", "")), files=files,
                   layout=str(data.get("layout", "auto")), license=str(data.get("license", "")),
                   citation=str(data.get("citation", "")), homepage=str(data.get("homepage", "")),
                   source=str(data.get("source", "")), checksums=checksums, path=path)


_DIGEST_LENGTHS = {"md5": 32, "sha256": 64}


def _check_digests(entry: Mapping[str, Any], where: str) -> None:
    """Refuse a checksum that is not its digest's hexadecimal string: YAML reads an unquoted
    all-digit one as a number (and a leading 0 as octal), which no download would match."""
    for kind, length in _DIGEST_LENGTHS.items():
        value = entry.get(kind)
        if value is None or value == "":  # none given
            continue
        if not (isinstance(value, str) and len(value) == length and all(c in "0123456789abcdefABCDEF" for c in value)):
            quoting = " in quotes (YAML reads an unquoted all-digit checksum as a number)" \
                if not isinstance(value, str) else ""
            raise DataError(f"{where}: file {entry['name']}: {kind} {value!r} is not {length} hexadecimal digits; "
                            f"write the publisher's {kind}{quoting}")


def card_dirs() -> list[Path]:
    """Folders searched for source cards, first match wins (see :func:`paths.registry_dirs`)."""
    return paths.registry_dirs("datasets")


def read_card(path: str | Path) -> SourceCard:
    """Read one card file (``.yaml``/``.yml``)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read source card {path}: {str(exc).splitlines()[0]}") from None
    return SourceCard.from_dict(data, str(path))


def list_cards() -> list[SourceCard]:
    """Every card found, by name (earlier folders shadow later ones). A card that cannot be
    read is left out with a one-line warning, so that it blocks no other card."""
    cards: dict[str, SourceCard] = {}
    for folder in card_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.y*ml")):
            try:
                card = read_card(path)
            except DataError as exc:
                print(f"warning: {exc}; left out", file=sys.stderr)
                continue
            cards.setdefault(card.name, card)
    return [cards[k] for k in sorted(cards)]


def find_card(name: str) -> SourceCard:
    """A card by its name, a card file path, or the name of one file in some card.

    Raises:
        UsageError: nothing matches (with a suggestion).
    """
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return read_card(name)
    cards = list_cards()
    for card in cards:
        if card.name == name:
            return card
    holders = [(card, f) for card in cards for f in card.files if f.name == name]
    if len(holders) > 1:  # e.g. every Well card has a stats.yaml: the user must say which
        names = ", ".join(card.name for card, _ in holders[:4]) + (", ..." if len(holders) > 4 else "")
        raise UsageError(f"'{name}' is a file of {len(holders)} cards ({names}); "
                         f"name the card and pick the file with --file '{name}'")
    if holders:
        card, f = holders[0]
        return SourceCard(**{**card.__dict__, "files": [f]})
    choices = [c.name for c in cards] + [f.name for c in cards for f in c.files]
    raise UsageError(f"unknown dataset source '{name}'{did_you_mean(name, choices)}; "
                     f"run 'pdeb data sources' to list them")


def _select(card: SourceCard, patterns: Iterable[str] | None) -> list[SourceFile]:
    patterns = list(patterns or [])
    if not patterns:
        return list(card.files)
    chosen = [f for f in card.files if any(fnmatch.fnmatch(f.name, p) for p in patterns)]
    if not chosen:
        names = ", ".join(f.name for f in card.files[:5]) + (", ..." if len(card.files) > 5 else "")
        raise UsageError(f"no file of '{card.name}' matches {', '.join(patterns)} (files: {names})")
    return chosen


def _hasher(f: SourceFile):
    # md5 only where the card gives nothing better; files without any checksum get sha256 for the lock
    return hashlib.md5() if f.md5 and not f.sha256 else hashlib.sha256()


class ChecksumLock:
    """The sha256 of files recorded at their first, unverified download (:data:`LOCK_FILE`).

    Args:
        folder: The destination folder; the lock file sits in it.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self.entries: dict[str, str] = {}
        self.recorded: list[str] = []  # first downloads made by this call, for the warning
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        for number, line in enumerate(self.path.read_text().split("\n"), 1):  # as written: \n alone ends a line
            if not line.strip():
                continue
            match = _LOCK_LINE.match(line.strip())
            if not match:
                raise DataError(f"{self.path}, line {number}: not '<sha256>  <file name>'; fix or delete that line")
            self.entries[match.group(2)] = match.group(1)

    def get(self, name: str) -> str | None:
        """The recorded sha256 of ``name``, or ``None`` if it was never downloaded here."""
        return self.entries.get(name)

    def record(self, name: str, digest: str) -> None:
        """Remember ``name``'s sha256, rewriting the lock file atomically."""
        self.entries[name] = digest.lower()
        self.recorded.append(name)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with _open_own(tmp, "w") as out:
            out.write("".join(f"{self.entries[n]}  {n}\n" for n in sorted(self.entries)))
        os.replace(tmp, self.path)


def _open_own(path: Path, mode: str):
    """Open one of the download's own scratch files (``w``, ``wb`` or ``ab``) without following a
    link: a symlink left at its name (pointing anywhere) is removed first, never written through."""
    if path.is_symlink():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    return os.fdopen(os.open(path, flags, 0o644), mode)


def _hash_file(path: Path, hasher) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)


def _total_from_content_range(value: str | None) -> int | None:
    """``"bytes 10-99/100"`` or ``"bytes */100"`` -> 100."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _partial_size(part: Path) -> int:
    """Bytes of an earlier partial download at ``part``; a link there is not one of ours: it is
    removed, never resumed, read or written through."""
    if part.is_symlink():
        part.unlink()
    return part.stat().st_size if part.exists() else 0


def _fetch(f: SourceFile, folder: Path, progress, retries: int, timeout: float, lock: ChecksumLock) -> Path:
    """Fetch one file into ``folder`` (resuming, retrying, verifying); returns its path."""
    import http.client
    import urllib.error
    import urllib.request

    from pdebench_core import __version__

    final = folder / f.name
    part = folder / (f.name + PARTIAL_SUFFIX)
    part.parent.mkdir(parents=True, exist_ok=True)  # a card may keep files in sub-folders
    offset = _partial_size(part)
    check_free_space(folder, f.approx_size - offset if f.approx_size else None, f.name, largest_file=f.approx_size)
    task = progress.add_task(f.name, total=None) if progress else None
    hasher = None
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"pdeb/{__version__}"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(f.url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                total = _total_from_content_range(exc.headers.get("Content-Range"))
                if total == offset:  # the partial file is already complete
                    break
                part.unlink()
                continue
            reason = " ".join(str(exc.reason).split())  # a redirect loop's reason spans lines
            raise DataError(f"download of {f.name} failed: HTTP {exc.code} {reason} ({f.url})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if attempt < retries:
                attempt += 1
                time.sleep(min(2.0 ** attempt, 30.0) * 0.1)
                continue
            raise DataError(f"cannot download {f.name} from {f.url}: {reason}") from None
        with response:
            offset, total = _resumed_at(f, part, response, offset)
            check_free_space(folder, (total - offset) if total is not None else
                             (f.approx_size - offset if f.approx_size else None), f.name,
                             largest_file=total if total is not None else f.approx_size)
            hasher = _hasher(f)
            if offset:
                _hash_file(part, hasher)
            if progress:
                progress.update(task, total=total, completed=offset)
            try:
                _stream(response, part, offset, hasher, lambda n: progress.advance(task, n) if progress else None,
                        watch_space=total is None)
            except (http.client.HTTPException, OSError) as exc:  # the network's: the disk's are one line already
                if attempt < retries:
                    attempt += 1
                    continue
                raise DataError(f"download of {f.name} interrupted after {human_bytes(part.stat().st_size)}"
                                f" ({type(exc).__name__}); run the command again to resume") from None
        size = part.stat().st_size
        if total is not None and size < total:
            if attempt < retries:
                attempt += 1
                continue
            raise DataError(f"download of {f.name} stopped at {size} of {total} bytes; run the command again to resume")
        if total is not None and size > total:
            part.unlink()
            raise DataError(f"download of {f.name} is larger than the server's {total} bytes; removed it, try again")
        break
    return _verify_and_publish(f, part, final, hasher, lock)


def _resumed_at(f: SourceFile, part: Path, response, offset: int) -> tuple[int, int | None]:
    """``(offset, total size)`` the response continues from: ``offset`` for a range that starts
    there, 0 for a whole file (a 200, or a range from byte 0: servers that ignore ``Range``)."""
    if response.status == 206:
        total = _total_from_content_range(response.headers.get("Content-Range"))
        start = response.headers.get("Content-Range", "").split(" ")[-1].split("-")[0]
        if start == "0":
            return 0, total
        if not start.isdigit() or int(start) != offset:
            raise DataError(f"download of {f.name}: the server resumed at byte {start}, not {offset}; delete "
                            f"{part} and run the command again to start over")
        return offset, total
    length = response.headers.get("Content-Length")  # 200: the server sent the whole file, so start over
    return 0, int(length) if length and length.isdigit() else None


def _stream(response, part: Path, offset: int, hasher, advance, watch_space: bool = False) -> None:
    """Append (or, from byte 0, write) the response's bytes to ``part``. A read that fails is
    the network's (raised as it is, for a retry); a write that fails is the disk's (one line).
    With ``watch_space`` (a file of unknown size, so not checked before), the writing stops
    before it leaves less than :data:`~pdebench_core.diskspace.SPACE_MARGIN` free."""
    try:
        out = _open_own(part, "ab" if offset else "wb")
    except OSError as exc:
        raise write_failed(part, exc) from None
    with out:
        while chunk := response.read(CHUNK):
            try:
                out.write(chunk)
            except OSError as exc:  # a full disk or a file-size limit: retrying would not help
                raise write_failed(part, exc, "the partial file is kept: free space and run the command again "
                                              "to resume") from None
            hasher.update(chunk)
            advance(len(chunk))
            free = free_bytes(part.parent) if watch_space else SPACE_MARGIN
            if free < SPACE_MARGIN:
                raise DataError(f"stopped downloading {part.name[:-len(PARTIAL_SUFFIX)]} at "
                                f"{human_bytes(part.stat().st_size)}: the server states no size and the disk has "
                                f"{human_bytes(free)} free, under the {human_bytes(SPACE_MARGIN)} "
                                f"pdeb keeps; the partial file is kept: free space and run the command again to resume")


def _verify_and_publish(f: SourceFile, part: Path, final: Path, hasher, lock: ChecksumLock) -> Path:
    """Check the downloaded bytes against the card's (or the lock's) checksum, then rename ``part``.

    A file with neither is recorded in the lock: this is its trusted first download.
    """
    if hasher is None:  # completed in an earlier run, only the rename was missing
        hasher = _hasher(f)
        _hash_file(part, hasher)
    got = hasher.hexdigest()
    if f.sha256 or f.md5:
        expected, kind = (f.sha256, "sha256") if f.sha256 else (f.md5, "md5")
        fix = "the download was removed, run the command again"
    else:
        expected, kind = lock.get(f.name), "sha256"
        fix = (f"the download was removed; {lock.path.name} holds the sha256 of its first download "
               f"(if the publisher changed the file on purpose, delete that line and download again)")
    if expected is None:
        lock.record(f.name, got)
    elif got.lower() != str(expected).lower():
        part.unlink()
        raise DataError(f"checksum mismatch for {f.name}: expected {kind} {expected}, got {got}; {fix}")
    os.replace(part, final)
    # a later call need not read it again (with the same algorithm: a card may gain a sha256 later)
    remember(DOWNLOAD_CHECK, file_identity(final), {"algorithm": hasher.name, "digest": got.lower()})
    return final


#: The remembered check of a downloaded file's checksum (see :mod:`pdebench_core.data.integrity`).
DOWNLOAD_CHECK = "download-checksum"


def _set_aside_if_changed(f: SourceFile, final: Path, lock: ChecksumLock) -> None:
    """A file already present whose bytes no longer match its checksum (edited, cut short,
    damaged on disk) is renamed ``<name>.damaged``, so that it is fetched again; the digest of
    a file that matches is remembered by its size and modification time, so it is read once."""
    expected = f.sha256 or f.md5 or lock.get(f.name)
    if expected is None or not final.is_file() or final.is_symlink():
        return
    identity = file_identity(final)
    hasher = _hasher(f)
    record = remembered(DOWNLOAD_CHECK, identity) or {}
    known = record.get("digest") if record.get("algorithm") == hasher.name else None
    if known is None:
        _hash_file(final, hasher)
        known = hasher.hexdigest().lower()
        remember(DOWNLOAD_CHECK, identity, {"algorithm": hasher.name, "digest": known})
    if known != str(expected).lower():
        aside = final.with_name(final.name + ".damaged")
        os.replace(final, aside)
        print(f"warning: {final} no longer matches its checksum; kept as {aside.name} and fetched again",
              file=sys.stderr)


def download(name_or_card: str | SourceCard | Mapping[str, Any], dest: str | Path | None = None,
             files: Iterable[str] | None = None, progress: bool = True, retries: int = 3,
             timeout: float = 60.0, trust_first_download: bool = False) -> list[Path]:
    """Download the files of a source card.

    Args:
        name_or_card: A card name, a file name listed in a card, a card file path,
            a :class:`SourceCard`, or a card as a dict.
        dest: Destination folder (default ``$PDEB_HOME/data/downloads/<card name>``).
        files: Glob patterns choosing files of the card (default: all of them).
        progress: Show a rich progress bar.
        retries: How often a dropped connection is resumed before giving up.
        timeout: Seconds to wait for the server on each request.
        trust_first_download: Fetch files that have no published checksum and no
            record in :data:`LOCK_FILE` yet, recording their sha256 there (a one-line
            warning says they were not verified). Later downloads and resumes of those
            files are checked against the record.

    Returns:
        Paths of the verified files, in card order. Files already present under their
        final name are not fetched again unless their bytes no longer match their
        checksum (checked once per version of the file, then remembered).

    Raises:
        DataError: HTTP errors (404...), checksum mismatch, not enough disk space,
            an unreachable server.
        UsageError: unknown card name, no file matching ``files``, or files without
            any checksum to check when ``trust_first_download`` is false.
    """
    if isinstance(name_or_card, SourceCard):
        card = name_or_card
    elif isinstance(name_or_card, Mapping):
        card = SourceCard.from_dict(name_or_card)
    else:
        card = find_card(str(name_or_card))
    chosen = _select(card, files)
    folder = Path(dest) if dest is not None else paths.data_dir() / "downloads" / card.name
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--dest {folder} is a file; give a folder to download into (it is made when missing)")
    _check_inside(card, chosen, folder)
    lock = ChecksumLock(folder)
    for f in chosen:
        _set_aside_if_changed(f, folder / f.name, lock)
    missing = [f for f in chosen if not (folder / f.name).exists()]
    unverified = [f.name for f in missing if not (f.md5 or f.sha256 or lock.get(f.name))]
    if unverified and not trust_first_download:
        raise UsageError(f"'{card.name}': its publisher gives no checksums, so the first download of "
                         f"{_count(unverified)} cannot be verified; pass --trust-first-download to fetch "
                         f"anyway and record their sha256 in {LOCK_FILE} for later downloads to check")
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [f.approx_size for f in missing]
    if missing and all(s is not None for s in sizes):
        partial = sum((folder / (f.name + PARTIAL_SUFFIX)).stat().st_size for f in missing
                      if (folder / (f.name + PARTIAL_SUFFIX)).exists())
        check_free_space(folder, sum(sizes) - partial, f"{len(missing)} file(s) of {card.name}",
                         largest_file=max(sizes))
    bar = _progress_bar() if progress and missing else None
    results = []
    try:
        if bar:
            bar.start()
        for f in chosen:
            final = folder / f.name
            results.append(final if final.exists() else _fetch(f, folder, bar, retries, timeout, lock))
    finally:
        if bar:
            bar.stop()
        if lock.recorded:  # also when a later file fails: these were still published unverified
            print(f"warning: {_count(lock.recorded)} of '{card.name}' downloaded without a published checksum, "
                  f"so NOT verified; the sha256 is now in {lock.path} and later downloads are checked against it",
                  file=sys.stderr)
    return results


def _count(names: list[str]) -> str:
    return f"file {names[0]}" if len(names) == 1 else f"{len(names)} files"


def _check_inside(card: SourceCard, chosen: list[SourceFile], folder: Path) -> None:
    """Every target resolves inside ``folder`` (also for cards built in code, not read from YAML)."""
    where = card.path or f"card '{card.name}'"
    if not _SAFE_CARD_NAME.match(card.name):
        raise UsageError(f"{where}: card name '{card.name}' must be letters, digits, '.', '_' or '-'; rename the card")
    root = folder.resolve()
    for f in chosen:
        check_file_name(f.name, where)
        check_url(f.url, where)
        if f.name in (LOCK_FILE, LOCK_FILE + ".tmp"):
            raise UsageError(f"{where}: file name '{f.name}' is reserved for pdeb's checksum record; rename it")
        if not (root / f.name).resolve().is_relative_to(root):
            links = [p for p in (root / f.name, *(root / f.name).parents) if p.is_symlink() and root in p.parents]
            if links:  # the card is fine: something in the destination points elsewhere
                raise UsageError(f"{links[-1]} in the destination is a link leading outside {folder}; remove it "
                                 f"(pdeb never writes through links)")
            raise UsageError(f"{where}: file '{f.name}' resolves outside {folder}; fix the card's 'name'")


def _progress_bar():
    from rich.progress import (
        BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn())
