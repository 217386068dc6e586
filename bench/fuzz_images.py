"""Fuzz the image routes of a real `ae-serve` with byte-level mutations of every accepted format.

    nice -n 10 python -m bench.fuzz_images --count 100000 --seed 0 --workers 3

Seeds are made here from a photo crop (`tests/fixtures/images`): PNG, JPEG, WebP, BMP, TIFF and GIF in
the modes each format holds (RGB, L, RGBA, P, 1-bit, 16-bit, CMYK, interlaced, progressive,
compressed, animated). Each case is a seed with one to four mutations stacked: bit flips, bytes set
to interesting values, header fields overwritten with interesting integers, random bytes inserted,
ranges deleted, duplicated or moved, and truncation. Cases are sent by a few client threads to the
image models' routes (image-conv reconstruct and encode, image-denoise reconstruct, a codec's encode)
of a server started on the committed `models/` repository, mostly under their own content type and
sometimes under another `image/*` type (the sniffed format wins).

Case `i` depends only on `--seed` and `i`, so a run is reproducible whatever the thread scheduling.
The answers are counted by status. The run fails (exit 1) on any answer >= 500, a request that gets
no answer, or a server that stops answering; every such input is saved to `--failures` with its
route and content type, to reproduce with curl. This is a bench script, not a test:
tests/service/test_fuzz_images.py runs it with a small count against the tiny models to keep it working.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import random
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.net import free_port, http_get, service_command, spawned

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "fixtures" / "images" / "100007.jpg"
DEFAULT_TARGETS = "image-conv:reconstruct,image-conv:encode,image-denoise:reconstruct,image-codec-q2:encode"
CONTENT_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}
# Values that sit on the edges parsers get wrong: zero, one, sign bits, all ones, powers of two.
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x10, 0x40, 0xFE)
INTERESTING_INTEGERS = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000)
# Header fields (sizes, offsets, counts, bit depths) live in the first bytes of every accepted format.
HEADER_BYTES = 64
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Seed:
    """One well-formed image the mutations start from."""

    name: str
    fmt: str
    data: bytes


@dataclass(frozen=True)
class Target:
    """A route that takes an image body."""

    model: str
    operation: str

    @property
    def path(self) -> str:
        """The route's path."""
        return f"/v1/models/{self.model}/{self.operation}"


@dataclass(frozen=True)
class Case:
    """One mutated body, where it goes, and how it is labelled."""

    index: int
    seed: str
    mutations: tuple[str, ...]
    body: bytes
    target: Target
    content_type: str


# ---------------------------------------------------------------- seeds


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _sixteen_bit(gray: Image.Image) -> Image.Image:
    """The gray crop spread over 16 bits (`I;16`), as scientific and medical images come."""
    return Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)  # uint16 -> I;16


def make_seeds(photo: Path = PHOTO, size: tuple[int, int] = (40, 24)) -> list[Seed]:
    """Every accepted format in the modes it holds, from a small crop of `photo` (small: fast requests)."""
    with Image.open(photo) as opened:
        rgb = opened.convert("RGB").crop((40, 60, 40 + size[0], 60 + size[1]))
    gray = rgb.convert("L")
    rgba = rgb.copy()
    rgba.putalpha(gray)
    palette = rgb.quantize(16)
    one_bit = gray.convert("1")
    sixteen = _sixteen_bit(gray)
    second_frame = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).quantize(16)
    oriented = rgb.getexif()
    oriented[0x0112] = 6  # EXIF orientation: rotate, so the transpose path runs too
    variants: list[tuple[str, str, Image.Image, dict[str, object]]] = [
        ("png-rgb", "PNG", rgb, {}),
        ("png-l", "PNG", gray, {}),
        ("png-rgba", "PNG", rgba, {}),
        ("png-p", "PNG", palette, {"transparency": 0}),
        ("png-1", "PNG", one_bit, {}),
        ("png-16", "PNG", sixteen, {}),
        ("png-la", "PNG", rgba.convert("LA"), {}),
        ("png-interlaced", "PNG", rgb, {"interlace": 1}),
        ("jpeg-rgb", "JPEG", rgb, {"quality": 80}),
        ("jpeg-l", "JPEG", gray, {}),
        ("jpeg-cmyk", "JPEG", rgb.convert("CMYK"), {}),
        ("jpeg-progressive", "JPEG", rgb, {"progressive": True}),
        ("jpeg-exif", "JPEG", rgb, {"exif": oriented.tobytes()}),
        ("webp-lossy", "WEBP", rgb, {"quality": 70}),
        ("webp-lossless-rgba", "WEBP", rgba, {"lossless": True}),
        ("webp-animated", "WEBP", rgb, {"save_all": True, "append_images": [second_frame.convert("RGB")]}),
        ("bmp-rgb", "BMP", rgb, {}),
        ("bmp-l", "BMP", gray, {}),
        ("bmp-p", "BMP", palette, {}),
        ("bmp-1", "BMP", one_bit, {}),
        ("bmp-32", "BMP", rgba, {}),  # 32 bits per pixel
        ("tiff-rgb", "TIFF", rgb, {}),
        ("tiff-l", "TIFF", gray, {}),
        ("tiff-rgba", "TIFF", rgba, {}),
        ("tiff-p", "TIFF", palette, {}),
        ("tiff-16", "TIFF", sixteen, {}),
        ("tiff-cmyk", "TIFF", rgb.convert("CMYK"), {}),
        ("tiff-lzw", "TIFF", rgb, {"compression": "tiff_lzw"}),
        ("tiff-deflate", "TIFF", rgb, {"compression": "tiff_adobe_deflate"}),
        ("tiff-packbits", "TIFF", gray, {"compression": "packbits"}),
        ("tiff-jpeg", "TIFF", rgb, {"compression": "jpeg"}),
        ("gif-p", "GIF", palette, {}),
        ("gif-l", "GIF", gray, {}),
        ("gif-transparent", "GIF", palette, {"transparency": 0}),
        ("gif-animated", "GIF", palette, {"save_all": True, "append_images": [second_frame], "duration": 40}),
    ]
    return [Seed(name, fmt, _encode(image, fmt, **options)) for name, fmt, image, options in variants]


# ---------------------------------------------------------------- mutations


def _bit_flip(data: bytearray, rng: random.Random) -> str:
    at = rng.randrange(len(data))
    bit = rng.randrange(8)
    data[at] ^= 1 << bit
    return f"flip {at}:{bit}"


def _interesting_byte(data: bytearray, rng: random.Random) -> str:
    at = rng.randrange(len(data))
    data[at] = rng.choice(INTERESTING_BYTES)
    return f"byte {at}={data[at]:#x}"


def _header_field(data: bytearray, rng: random.Random) -> str:
    """Overwrite 2 or 4 bytes near the start (sizes, offsets, counts) with an edge value, either endianness."""
    width = rng.choice((2, 4))
    at = rng.randrange(max(1, min(HEADER_BYTES, len(data) - width + 1)))
    value = rng.choice(INTERESTING_INTEGERS) & ((1 << (8 * width)) - 1)
    order = rng.choice("<>")
    data[at : at + width] = struct.pack(f"{order}{'H' if width == 2 else 'I'}", value)
    return f"field {at}:{width}{order}={value:#x}"


def _insert(data: bytearray, rng: random.Random) -> str:
    at = rng.randrange(len(data) + 1)
    length = rng.choice((1, 2, 4, 16, 256))
    data[at:at] = rng.randbytes(length)
    return f"insert {at}+{length}"


def _span(data: bytearray, rng: random.Random) -> tuple[int, int]:
    """A range of the data: mostly short (a field), sometimes long (a chunk or a scan)."""
    start = rng.randrange(len(data))
    longest = rng.choice((4, 16, 256, len(data)))
    return start, min(len(data), start + rng.randint(1, longest))


def _delete(data: bytearray, rng: random.Random) -> str:
    start, end = _span(data, rng)
    if end - start >= len(data):  # leave a byte: an empty body is a single case, not worth thousands
        end -= 1
    del data[start:end]
    return f"delete {start}:{end}"


def _duplicate(data: bytearray, rng: random.Random) -> str:
    start, end = _span(data, rng)
    data[end:end] = data[start:end]
    return f"duplicate {start}:{end}"


def _move(data: bytearray, rng: random.Random) -> str:
    """Copy a range over another place (chunks and segments out of order)."""
    start, end = _span(data, rng)
    to = rng.randrange(len(data))
    piece = data[start:end]
    data[to : to + len(piece)] = piece
    return f"move {start}:{end}>{to}"


def _truncate(data: bytearray, rng: random.Random) -> str:
    at = rng.randint(1, len(data) - 1) if len(data) > 1 else 1
    del data[at:]
    return f"truncate {at}"


MUTATIONS: tuple[Callable[[bytearray, random.Random], str], ...] = (
    _bit_flip,
    _interesting_byte,
    _header_field,
    _insert,
    _delete,
    _duplicate,
    _move,
    _truncate,
)


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, tuple[str, ...]]:
    """One to four mutations stacked; returns the body and what was done, for the failure report."""
    body = bytearray(data)
    done = []
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        if not body:
            break
        done.append(rng.choice(MUTATIONS)(body, rng))
    return bytes(body), tuple(done)


def make_case(index: int, seed: int, seeds: list[Seed], targets: list[Target]) -> Case:
    """Case `index` of run `seed`: the same bytes, route and label on every run and in any thread."""
    rng = random.Random(f"{seed}:{index}")
    chosen = rng.choice(seeds)
    body, mutations = mutate(chosen.data, rng)
    # Mostly the seed's own type; one in five under another image type, the sniffed format wins.
    if rng.random() < 0.8:
        content_type = CONTENT_TYPES[chosen.fmt]
    else:
        content_type = rng.choice([*CONTENT_TYPES.values(), "image/x-unknown"])
    return Case(index, chosen.name, mutations, body, rng.choice(targets), content_type)


# ---------------------------------------------------------------- sending


@dataclass
class Tally:
    """What the run saw, shared by the client threads."""

    statuses: Counter[str]
    failures: list[Case]
    lock: threading.Lock

    @classmethod
    def empty(cls) -> Tally:
        """Nothing seen yet."""
        return cls(Counter(), [], threading.Lock())

    def record(self, case: Case, status: str) -> None:
        """Count a status; keep the case when it is >= 500 or no answer at all."""
        with self.lock:
            self.statuses[status] += 1
            if not status.isdigit() or int(status) >= 500:
                self.failures.append(case)


class Client:
    """One keep-alive connection per thread, reopened after the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.connection: http.client.HTTPConnection | None = None

    def post(self, case: Case) -> str:
        """The answer's status, or why there was none ("no answer: ...")."""
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
            try:
                self.connection.request(
                    "POST", case.target.path, body=case.body, headers={"content-type": case.content_type}
                )
                response = self.connection.getresponse()
                response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return str(response.status)
            except (OSError, http.client.HTTPException) as error:
                # A kept-alive connection the server closed between requests fails once; retry on a new one.
                self.close()
                if attempt == 1:
                    return f"no answer: {type(error).__name__}"
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def send_all(
    base_port: int, count: int, seed: int, workers: int, seeds: list[Seed], targets: list[Target], progress: bool
) -> Tally:
    """Send cases 0..count-1 from `workers` threads; stop early when the server stops answering."""
    tally = Tally.empty()
    next_index = iter(range(count))
    index_lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def work() -> None:
        client = Client("127.0.0.1", base_port)
        try:
            while not stop.is_set():
                with index_lock:
                    index = next(next_index, None)
                if index is None:
                    return
                case = make_case(index, seed, seeds, targets)
                status = client.post(case)
                tally.record(case, status)
                if status.startswith("no answer") and not _alive(base_port):
                    stop.set()
                if progress and index and index % 10_000 == 0:
                    rate = index / (time.monotonic() - started)
                    print(f"{index} sent, {rate:.0f}/s, {dict(tally.statuses)}", file=sys.stderr, flush=True)
        finally:
            client.close()

    threads = [threading.Thread(target=work, name=f"fuzz-{n}") for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def _alive(port: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{port}/health/live")[0] == 200
    except OSError:
        return False


def save_failures(folder: Path, failures: list[Case]) -> None:
    """Each failing input as `<index>.bin` with `<index>.json` (route, content type, seed, mutations, curl)."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in failures:
        body = folder / f"{case.index}.bin"
        body.write_bytes(case.body)
        curl = (
            f"curl -s -X POST localhost:8000{case.target.path} -H 'content-type: {case.content_type}' "
            f"--data-binary @{body.name}"
        )
        about = {
            "path": case.target.path,
            "content_type": case.content_type,
            "seed": case.seed,
            "mutations": case.mutations,
            "curl": curl,
        }
        (folder / f"{case.index}.json").write_text(json.dumps(about, indent=2) + "\n")


def parse_targets(text: str) -> list[Target]:
    """`model:operation,model:operation` -> targets."""
    targets = []
    for item in text.split(","):
        model, _, operation = item.strip().partition(":")
        if operation not in ("encode", "reconstruct") or not model:
            raise argparse.ArgumentTypeError(f"{item!r}: a target is MODEL:encode or MODEL:reconstruct")
        targets.append(Target(model, operation))
    return targets


def passed(tally: Tally, count: int, server_alive: bool) -> bool:
    """Every case sent and answered < 500, and the server still answering at the end."""
    return server_alive and not tally.failures and sum(tally.statuses.values()) == count


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz; print the status histogram as JSON; 0 when it passed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="mutated images to send")
    parser.add_argument("--seed", type=int, default=0, help="run seed: case i depends only on it and i")
    parser.add_argument("--workers", type=int, default=3, help="client threads")
    parser.add_argument("--repository", type=Path, default=ROOT / "models")
    parser.add_argument("--targets", type=parse_targets, default=parse_targets(DEFAULT_TARGETS))
    parser.add_argument(
        "--max-image-pixels", type=int, default=1 << 20, help="AE_MAX_IMAGE_PIXELS: mutated sizes stay cheap"
    )
    parser.add_argument("--failures", type=Path, default=Path("fuzz-failures"), help="where inputs >= 500 go")
    parser.add_argument("--summary", type=Path, help="also write the summary JSON here")
    args = parser.parse_args(argv)
    if args.count < 1 or args.workers < 1:
        parser.error("--count and --workers must be at least 1")

    seeds = make_seeds()
    port = free_port()
    env = {
        "AE_PROVIDERS": '["CPUExecutionProvider"]',
        "AE_WORKERS": "1",
        "AE_MAX_IMAGE_PIXELS": str(args.max_image_pixels),
    }
    # The server's own stderr stays on ours: a 500 leaves its traceback there.
    command = service_command(port, args.repository)
    with spawned(command, env, f"http://127.0.0.1:{port}", "/health/ready", quiet=False):
        started = time.monotonic()
        tally = send_all(port, args.count, args.seed, args.workers, seeds, args.targets, progress=True)
        duration_s = time.monotonic() - started
        server_alive = _alive(port)
    if tally.failures:
        save_failures(args.failures, tally.failures)
    summary = {
        "count": args.count,
        "sent": sum(tally.statuses.values()),
        "seed": args.seed,
        "workers": args.workers,
        "seeds": len(seeds),
        "targets": [target.path for target in args.targets],
        "duration_s": round(duration_s, 1),
        "statuses": dict(sorted(tally.statuses.items())),
        "failures": len(tally.failures),
        "server_alive_at_end": server_alive,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        args.summary.write_text(text + "\n")
    if tally.failures:
        print(f"{len(tally.failures)} inputs got >= 500 or no answer: saved to {args.failures}", file=sys.stderr)
    return 0 if passed(tally, args.count, server_alive) else 1


if __name__ == "__main__":
    sys.exit(main())
