"""`ae-train data fetch`: download the public data sets the default models were trained on.

For each data set:
1. if its folder under the data root already holds every pinned file with its pinned sha256,
   there is nothing to do (a rerun is a no-op);
2. otherwise download its archive from its public home (or a mirror) into a staging folder,
   extract the pinned files from the archive folders the data set keeps (BSDS500: train and test,
   not val) and check each against its pinned sha256;
3. only then rename the staging folder into place, so a failed or interrupted fetch never leaves a
   half-written data folder behind.

The pins are the extracted files' hashes (`training.datasets_manifest`), not the archives': see the
README's "Data sets" for why.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from training.datasets_manifest import BSDS400_SHA256, ECG5000_SHA256

DATASETS_ENV = "AE_DATASETS"
MIRROR_ENV = "AE_DATA_MIRROR"
# Where `ae-train fit`'s default config paths point, relative to its --data-root (the current directory).
DEFAULT_ROOT = Path("../shared/datasets")
CHUNK = 1 << 20


class DataFetchError(Exception):
    """A data set could not be fetched or verified; the message says why and what to do."""


@dataclass(frozen=True)
class DataSet:
    """One public data set: where its archive lives and which of its files training reads."""

    name: str
    url: str  # the archive at its public home; a mirror serves the same file name
    folder: str  # destination, relative to the data root
    keep: tuple[str, ...]  # archive folders whose files are kept ("" = anywhere)
    files: Mapping[str, str]  # file name -> sha256, every file training reads


BSDS400 = DataSet(
    name="bsds400",
    url="https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
    folder="images/bsds400",
    keep=("BSR/BSDS500/data/images/train", "BSR/BSDS500/data/images/test"),
    files=BSDS400_SHA256,
)
ECG5000 = DataSet(
    name="ecg5000",
    url="https://www.timeseriesclassification.com/aeon-toolkit/ECG5000.zip",
    folder="sequences/ecg5000",
    keep=("",),
    files=ECG5000_SHA256,
)
DATA_SETS: tuple[DataSet, ...] = (BSDS400, ECG5000)


def default_root() -> Path:
    """The data root: `AE_DATASETS` when set, else `../shared/datasets` (where training's defaults look)."""
    return Path(os.environ.get(DATASETS_ENV) or DEFAULT_ROOT)


def default_mirror() -> str | None:
    """The mirror's base URL from `AE_DATA_MIRROR`, if set (None: the public homes)."""
    return os.environ.get(MIRROR_ENV) or None


def source_url(data_set: DataSet, mirror: str | None) -> str:
    """The archive's URL: its public home, or the same file name under a mirror's base URL."""
    if not mirror:
        return data_set.url
    return f"{mirror.rstrip('/')}/{PurePosixPath(data_set.url).name}"


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    """File name -> sha256 of every file in a folder (how the pins were computed)."""
    return {path.name: sha256_of(path) for path in sorted(folder.iterdir()) if path.is_file()}


def content_sha256(files: Mapping[str, str]) -> str:
    """One hash for a whole data set: the sha256 of its `sha256sum`-style listing, sorted by name."""
    listing = "".join(f"{files[name]}  {name}\n" for name in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()


def problems(folder: Path, files: Mapping[str, str]) -> list[str]:
    """What keeps a folder from holding exactly the pinned bytes of each pinned file (empty: verified)."""
    found: list[str] = []
    for name, expected in sorted(files.items()):
        path = folder / name
        actual = sha256_of(path) if path.is_file() else None
        if actual is None:
            found.append(f"{name} is missing")
        elif actual != expected:
            found.append(f"{name} has sha256 {actual}, expected {expected}")
    return found


def fetch(
    root: Path,
    data_sets: Sequence[DataSet] | None = None,
    mirror: str | None = None,
    timeout: float = 60.0,
    report: Callable[[str], None] = lambda line: None,
) -> dict[str, dict[str, object]]:
    """Make `root` hold every data set (default: `DATA_SETS`), verified; per data set its status and hashes."""
    summary: dict[str, dict[str, object]] = {}
    for data_set in DATA_SETS if data_sets is None else data_sets:
        status = fetch_one(root, data_set, mirror, timeout, report)
        summary[data_set.name] = {
            "status": status,
            "folder": str(root / data_set.folder),
            "files": len(data_set.files),
            "content_sha256": content_sha256(data_set.files),
        }
    return summary


def fetch_one(root: Path, data_set: DataSet, mirror: str | None, timeout: float, report: Callable[[str], None]) -> str:
    """Fetch one data set unless it is already in place; returns "present" or "fetched"."""
    target = root / data_set.folder
    if target.exists():
        found = problems(target, data_set.files)
        if not found:
            report(f"{data_set.name}: {target} is present and verified")
            return "present"
        raise DataFetchError(
            f"{target} exists but does not match the pinned checksums ({len(found)} problems; first: {found[0]}); "
            f"move it away and run again, or choose another folder with --dest or {DATASETS_ENV}"
        )
    url = source_url(data_set, mirror)
    try:
        _download_and_place(url, data_set, target, timeout, report)
    except OSError as error:
        raise DataFetchError(
            f"cannot write {target}: {error}. Choose a writable folder with --dest or {DATASETS_ENV}"
        ) from None
    report(f"{data_set.name}: {len(data_set.files)} files verified and written to {target}")
    return "fetched"


def _download_and_place(
    url: str, data_set: DataSet, target: Path, timeout: float, report: Callable[[str], None]
) -> None:
    """Download, extract and verify in a staging folder, then rename the verified folder into place."""
    # Stage beside the destination (same file system), so the final rename is atomic.
    with tempfile.TemporaryDirectory(prefix=".ae-data-", dir=_nearest_existing(target)) as staging:
        archive = Path(staging) / PurePosixPath(url).name
        report(f"{data_set.name}: downloading {url}")
        download(url, archive, timeout)
        extracted = Path(staging) / data_set.name
        extract(archive, url, data_set, extracted)
        found = problems(extracted, data_set.files)
        if found:
            raise DataFetchError(
                f"{url}: the extracted files do not match the pinned checksums ({len(found)} problems; "
                f"first: {found[0]}); nothing was written. The download may be corrupt, or the archive may "
                f"have changed at its source: set {DATASETS_ENV} to a verified copy, or use a mirror"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        extracted.rename(target)


def download(url: str, path: Path, timeout: float) -> None:
    """Stream a URL into a file; any network failure becomes a `DataFetchError` saying what to do."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, path.open("wb") as file:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, file, CHUNK)
            written = file.tell()
    except urllib.error.HTTPError as error:
        raise _unreachable(url, f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise _unreachable(url, str(error.reason)) from None
    except (OSError, http.client.HTTPException) as error:
        raise _unreachable(url, str(error) or type(error).__name__) from None
    if expected is not None and written != int(expected):
        raise _unreachable(url, f"the download stopped after {written} of {expected} bytes")


def extract(archive: Path, url: str, data_set: DataSet, into: Path) -> None:
    """Copy the pinned files out of the archive folders the data set keeps (a .tgz or a .zip)."""

    def wanted(name: str) -> bool:
        path = PurePosixPath(name)
        return path.name in data_set.files and _kept(path, data_set.keep)

    into.mkdir()
    try:
        for name, source in _members(archive, wanted):
            destination = into / PurePosixPath(name).name
            if destination.exists():
                raise DataFetchError(f"{url}: {destination.name} appears twice in the kept folders")
            with source, destination.open("wb") as file:
                shutil.copyfileobj(source, file, CHUNK)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataFetchError(f"{url} is not a readable .tgz or .zip archive ({error}); nothing was written") from None


def _members(archive: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, open file) for each wanted regular file in a zip or (compressed) tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if not info.is_dir() and wanted(info.filename):
                    yield info.filename, zipped.open(info)
        return
    with tarfile.open(archive, "r:*") as tarred:
        for member in tarred:
            source = tarred.extractfile(member) if member.isfile() and wanted(member.name) else None
            if source is not None:
                yield member.name, source


def _kept(path: PurePosixPath, keep: tuple[str, ...]) -> bool:
    """Whether an archive member sits directly in one of the kept folders ("" keeps any folder)."""
    folder = str(path.parent).removeprefix("./")
    return any(prefix == "" or folder == prefix for prefix in keep)


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists (the staging folder's home)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _unreachable(url: str, reason: str) -> DataFetchError:
    return DataFetchError(
        f"cannot download {url}: {reason}. Nothing was written. If this machine is offline, set "
        f"{DATASETS_ENV} to an existing copy of the data sets, or serve the archives from a reachable "
        f"host and pass --mirror URL (or set {MIRROR_ENV})"
    )
