"""`ae-train data fetch` against a local HTTP server standing in for the public hosts (no network)."""

import dataclasses
import functools
import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from training import datasets
from training.cli import main

PHOTOS = {"train": ["2092.jpg", "8049.jpg"], "test": ["100007.jpg"], "val": ["3096.jpg"]}
ECG_LINES = "   1.0000000e+00  -1.1252183e-01  -2.8272038e+00\n   2.0000000e+00   4.1e-01   3.3e-01\n"


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (seed * 40 % 256, 90, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def archives(tmp_path):
    """Fake BSR_bsds500.tgz and ECG5000.zip with the real archives' layout; the data sets pinning their files."""
    served = tmp_path / "served"
    served.mkdir()
    photos: dict[str, bytes] = {}
    with tarfile.open(served / "BSR_bsds500.tgz", "w:gz") as tgz:
        for split, names in PHOTOS.items():
            for name in names:
                photos[name] = _jpeg(len(photos))
                _add(tgz, f"BSR/BSDS500/data/images/{split}/{name}", photos[name])
            _add(tgz, f"BSR/BSDS500/data/images/{split}/Thumbs.db", b"not a photo")
        _add(tgz, "BSR/BSDS500/data/groundTruth/train/2092.mat", b"segmentations")
    with zipfile.ZipFile(served / "ECG5000.zip", "w") as archive:
        archive.writestr("ECG5000_TRAIN.txt", ECG_LINES)
        archive.writestr("ECG5000_TEST.txt", ECG_LINES * 9)
        archive.writestr("ECG5000_TRAIN.ts", "@problemName ECG5000\n")
    kept = {name: photos[name] for split in ("train", "test") for name in PHOTOS[split]}
    pins = [
        dataclasses.replace(datasets.BSDS400, files={n: hashlib.sha256(b).hexdigest() for n, b in kept.items()}),
        dataclasses.replace(
            datasets.ECG5000, files={"ECG5000_TRAIN.txt": hashlib.sha256(ECG_LINES.encode()).hexdigest()}
        ),
    ]
    return served, kept, pins


@pytest.fixture
def server(archives):
    """Serve the fake archives on 127.0.0.1; yields (base URL, list of requested paths)."""
    requested: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            requested.append(self.path)

    handler = functools.partial(Handler, directory=str(archives[0]))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", requested
        httpd.shutdown()
        thread.join()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob(".ae-data-*"))


def test_fetch_writes_the_training_layout_without_val(tmp_path, archives, server):
    _, kept, pins = archives
    root = tmp_path / "data"
    summary = datasets.fetch(root, pins, mirror=server[0])
    assert {name: s["status"] for name, s in summary.items()} == {"bsds400": "fetched", "ecg5000": "fetched"}
    photos = root / "images" / "bsds400"
    assert sorted(p.name for p in photos.iterdir()) == sorted(kept)  # train + test, no val, no Thumbs.db
    assert all((photos / name).read_bytes() == data for name, data in kept.items())
    assert sorted(p.name for p in (root / "sequences" / "ecg5000").iterdir()) == ["ECG5000_TRAIN.txt"]
    assert (root / "sequences" / "ecg5000" / "ECG5000_TRAIN.txt").read_text() == ECG_LINES
    assert summary["bsds400"]["content_sha256"] == datasets.content_sha256(datasets.file_hashes(photos))
    assert _leftovers(tmp_path) == []


def test_rerun_on_verified_data_is_a_no_op(tmp_path, archives, server):
    root = tmp_path / "data"
    datasets.fetch(root, archives[2], mirror=server[0])
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    requests = len(server[1])
    summary = datasets.fetch(root, archives[2], mirror=server[0])
    assert {s["status"] for s in summary.values()} == {"present"}
    assert len(server[1]) == requests  # nothing downloaded
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_checksum_mismatch_is_refused_and_nothing_is_left(tmp_path, archives, server):
    bsds, ecg = archives[2]
    wrong = dataclasses.replace(bsds, files={**bsds.files, "8049.jpg": "0" * 64})
    root = tmp_path / "data"
    with pytest.raises(datasets.DataFetchError, match=r"8049\.jpg has sha256 .* expected 0{64}") as error:
        datasets.fetch(root, [wrong, ecg], mirror=server[0])
    assert "BSR_bsds500.tgz" in str(error.value) and "nothing was written" in str(error.value)
    assert not root.exists()
    assert _leftovers(tmp_path) == []


def test_a_damaged_destination_is_not_overwritten(tmp_path, archives, server):
    root = tmp_path / "data"
    (root / "images" / "bsds400").mkdir(parents=True)
    (root / "images" / "bsds400" / "2092.jpg").write_bytes(b"edited")
    with pytest.raises(datasets.DataFetchError, match="exists but does not match the pinned checksums"):
        datasets.fetch(root, archives[2], mirror=server[0])
    assert (root / "images" / "bsds400" / "2092.jpg").read_bytes() == b"edited"
    assert server[1] == []


def test_an_archive_that_is_not_one_is_refused(tmp_path, archives, server):
    (archives[0] / "ECG5000.zip").write_bytes(b"<html>maintenance</html>")
    root = tmp_path / "data"
    with pytest.raises(datasets.DataFetchError, match=r"ECG5000\.zip is not a readable \.tgz or \.zip archive"):
        datasets.fetch(root, archives[2], mirror=server[0])
    assert not (root / "sequences").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("by_env", [pytest.param(False, id="flags"), pytest.param(True, id="environment")])
def test_cli_fails_clearly_when_the_host_is_unreachable(tmp_path, capsys, monkeypatch, by_env):
    mirror, root = f"http://127.0.0.1:{_closed_port()}", tmp_path / "data"
    if by_env:
        monkeypatch.setenv("AE_DATA_MIRROR", mirror)
        monkeypatch.setenv("AE_DATASETS", str(root))
        argv = ["data", "fetch", "--timeout", "5"]
    else:
        argv = ["data", "fetch", "--dest", str(root), "--mirror", mirror, "--timeout", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"cannot download {mirror}/BSR_bsds500.tgz" in err and "AE_DATASETS" in err and "--mirror" in err
    assert "Traceback" not in err
    assert not root.exists()
    assert _leftovers(tmp_path) == []


def test_cli_fetches_then_finds_the_data_present(tmp_path, capsys, monkeypatch, archives, server):
    monkeypatch.setattr(datasets, "DATA_SETS", tuple(archives[2]))
    root = tmp_path / "data"
    argv = ["data", "fetch", "--dest", str(root), "--mirror", server[0]]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["root"] == str(root) and first["data_sets"]["ecg5000"]["status"] == "fetched"
    assert main(argv) == 0
    assert {s["status"] for s in json.loads(capsys.readouterr().out)["data_sets"].values()} == {"present"}


def test_the_committed_pins_match_the_documented_splits():
    assert len(datasets.BSDS400.files) == 400 and all(name.endswith(".jpg") for name in datasets.BSDS400.files)
    assert list(datasets.ECG5000.files) == ["ECG5000_TRAIN.txt"]
    assert datasets.source_url(datasets.BSDS400, "http://mirror.example/data/") == (
        "http://mirror.example/data/BSR_bsds500.tgz"
    )


def test_default_root_follows_ae_datasets(monkeypatch, tmp_path):
    monkeypatch.delenv("AE_DATASETS", raising=False)
    assert datasets.default_root() == datasets.DEFAULT_ROOT
    monkeypatch.setenv("AE_DATASETS", str(tmp_path))
    assert datasets.default_root() == tmp_path
