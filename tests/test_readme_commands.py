"""Every command in the README's shell blocks runs as written (issue 21).

The commands are read from README.md's fenced shell blocks (continuation lines joined) and each is
either run, in document order, in a temporary copy of the repository, or named in EXEMPT with its
reason: a command the README gains is run by default, so it cannot go untested silently.

How they run, and the only liberties taken with them:
- The development venv's `bin/` is first on PATH, as for a reader who activated it (the README calls
  bare `python` and `ae-train`), and `.venv` in the copy is a link to that venv.
- `../shared/datasets` of the copy holds the test fixtures in the full data sets' layout (40 photos as
  `images/bsds400`, 200 heartbeats as `ECG5000_TRAIN.txt`), so the data paths run as written.
- Ports 8000 and 8123 become free ports; `/tmp/...` outputs land in the test's temp dir.
- Long runs get the step or count budget the CLI offers appended (TINY), never a different command.
- `curl` fails on an HTTP error (`--fail-with-body`): `curl -s` alone exits 0 on a 404, so a broken
  route would otherwise pass.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.net import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}

# Commands not run, each with why. Keep this short: a command that can run, runs.
EXEMPT = {
    "make test": "the whole suite (lint, types, pytest), which includes this test; CI runs it",
    "scripts/lock.sh": "network: resolves both environments against PyPI",
    "make data": "network: downloads BSDS500 and ECG5000",
    "docker compose up -d": "Docker and a GPU",
    "docker compose -f docker-compose.yml -f docker-compose.cpu.yml up -d": "Docker",
    # bench.load drives `wrk`, a Debian package the project does not install (no test needs it).
    "python -m bench.load --duration 10": "needs wrk; over the CI budget (wrk against two servers, 3 rounds)",
    "python -m bench.load --only 64x64 --concurrency 32 --service-env AE_WORKERS=1 --out /tmp/sweep": "needs wrk",
    "python -m bench.oip_load --duration 10": "needs wrk",
    "python -m bench.overload": "over the CI budget: ~18 s even at --seconds 2 (overload, then waits for recovery)",
    "python -m bench.codec_timing": "over the CI budget: ~16 s even at --repeats 1 (every codec level, 768x512)",
    # "When one machine is not enough": servers that run until stopped, and engines this machine lacks;
    # each is exercised by its own test instead.
    "AE_MODEL_CONTROL=poll AE_POLL_INTERVAL_S=10 ae-serve --repository models": "a server; test_model_control",
    "AE_MODEL_CONTROL=explicit AE_ADMIN_KEYS=admin-secret ae-serve --repository models": "a server; test_model_control",
    "curl -s -X POST -H 'Authorization: Bearer admin-secret' "
    "localhost:8000/v2/repository/models/image-denoise/load": "needs the explicit-mode server above; "
    "test_model_control and test_model_control_grpc load and unload against ae-serve",
    "serve run service.deploy.ray_serve:build repository=models replicas=2 num_cpus=1": "runs until stopped; "
    "test_ray_serve (marker ray, its own CI stage) deploys the same builder",
    "kubectl apply -f deploy/kserve/servingruntime.yaml -f deploy/kserve/inferenceservice-image-denoise.yaml": "a "
    "Kubernetes cluster with KServe; test_kserve_manifests validates the files",
    "torchrun --standalone --nproc_per_node 2 -m training.cli fit configs/image-denoise.toml --run-dir runs/ddp": (
        "a full training run; test_distributed runs the same under torchrun for a few steps"
    ),
}

# Budgets appended to long commands (the CLI's own overrides; later `--set`s win).
TINY_TRAIN = " --set optim.steps=2 --set optim.val_every=1"
TINY = {
    "nice -n 10 python -m bench.fuzz_images --count 100000": " --count 3",
    "python -m bench.soak --seconds 180": " --seconds 2",
}


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` outside quotes (README comments explain, they don't run)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_commands(text: str | None = None) -> list[str]:
    """The commands of every fenced shell block, in order, continuation lines joined with newlines."""
    text = README.read_text() if text is None else text
    commands: list[str] = []
    language = None
    pending: list[str] = []
    for raw in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", raw)
        if fence:
            language = None if language is not None else (fence.group(1) or "")
            continue
        if language not in SHELL_LANGUAGES:
            continue
        line = _strip_comment(raw)
        if not line and not pending:
            continue
        if line.endswith("\\"):
            pending.append(line)
            continue
        commands.append("\n".join([*pending, line]).strip())
        pending = []
    return commands


def _key(command: str) -> str:
    """A command on one line, spaces collapsed: how EXEMPT and TINY name it."""
    return " ".join(command.replace("\\\n", " ").split())


def _tiny(command: str) -> str:
    key = _key(command)
    if key.startswith(".venv/bin/ae-train fit ") and "--print-config" not in key:
        return command + TINY_TRAIN
    if key.startswith("ae-train evaluate codec "):
        return command + " --models image-codec-q1"  # one level of the ladder, not five
    if key.startswith("ae-train evaluate denoise "):
        return command + " --bm3d-limit 1 --sigma 25"  # BM3D on one image, one noise level
    return command + (TINY.get(key) or "")


def _is_client(command: str) -> bool:
    """Commands run against the `make run` server: the curl calls and the inline Python beside them."""
    return "localhost:8000" in command or command.startswith("python3 -c")


def _is_server(command: str) -> bool:
    return _key(command) == "make run" or (" --port 8123" in command and "ae-serve" in command.split()[0])


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of what the commands read and write, beside `shared/datasets` made of the fixtures."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("models", "configs", "bench", "requirements", "scripts"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    (repo / "tests").mkdir()
    shutil.copytree(ROOT / "tests" / "fixtures", repo / "tests" / "fixtures")
    (repo / ".venv").symlink_to(VENV_BIN.parent)
    datasets = tmp_path / "shared" / "datasets"
    (datasets / "images").mkdir(parents=True)
    (datasets / "images" / "bsds400").symlink_to(ROOT / "tests" / "fixtures" / "images")
    (datasets / "sequences" / "ecg5000").mkdir(parents=True)
    (datasets / "sequences" / "ecg5000" / "ECG5000_TRAIN.txt").symlink_to(
        ROOT / "tests" / "fixtures" / "sequences" / "ecg5000-200.txt"
    )
    return repo


def _environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    # One CPU worker thread: the 2-core CI machine runs two suites' worth of processes.
    env.update(AE_PROVIDERS='["CPUExecutionProvider"]', AE_INTRA_OP_THREADS="1", TMPDIR=str(tmp))
    return env


def _script(command: str, port: int, tmp: Path) -> str:
    """The command as run: ports and /tmp outputs translated, curl failing on HTTP errors."""
    command = command.replace("localhost:8000", f"127.0.0.1:{port}").replace("--port 8123", f"--port {port}")
    command = re.sub(r"(?<=\s)/tmp/", f"{tmp}/", command)
    return f'curl() {{ command curl --fail-with-body "$@"; }}\n{command}\n'


def _run(command: str, cwd: Path, env: dict[str, str], port: int, timeout: float) -> str:
    script = cwd.parent / "command.sh"
    # A file, not `bash -c`: the memory command's pgrep -f would otherwise match this shell.
    script.write_text(_script(command, port, cwd.parent))
    result = subprocess.run(["bash", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"README command failed ({result.returncode}):\n{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


class _Server:
    """A README command that starts a server, run in its own process group and stopped after."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str], port: int) -> None:
        script = cwd.parent / "server.sh"
        script.write_text(_script(command, port, cwd.parent))
        self.log = (cwd.parent / "server.log").open("wb")
        self.process = subprocess.Popen(
            ["bash", str(script)], cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.base = f"http://127.0.0.1:{port}"
        self.command = command

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.command} exited:\n{Path(self.log.name).read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.base}/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"{self.command} not ready in {timeout} s:\n{Path(self.log.name).read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def test_parser_joins_continuations_and_drops_comments() -> None:
    text = "x\n```bash\na \\\n  b   # c\n# only a comment\n\nd '#not' # e\n```\n```toml\nk = 1\n```\n```\nplain\n```\n"
    assert readme_commands(text) == ["a \\\n  b", "d '#not'"]


def test_exemptions_name_readme_commands() -> None:
    commands = readme_commands()
    assert len(commands) > 20, "the README's shell blocks were not found"
    keys = {_key(c) for c in commands}
    stale = [k for k in EXEMPT if k not in keys]
    assert not stale, f"EXEMPT names commands the README no longer has: {stale}"


def test_make_run_and_the_calls_against_it(workspace: Path, tmp_path: Path) -> None:
    """`make run`, then every client command of the README in order (they share in.png, latent.json...)."""
    env = _environment(tmp_path)
    port = free_port()
    # `make run` as written, with the dev venv standing in for .venv-serve: building that venv needs
    # the network, so make is told (-o) to take its stamp as up to date; the recipe itself runs.
    command = f"make run SERVE_VENV=.venv PORT={port} -o .venv/.installed"
    assert "make run" in [_key(c) for c in readme_commands()]
    server = _Server(command, workspace, {**env, "AE_WORKERS": "1"}, port)
    try:
        server.wait_ready()
        clients = [c for c in readme_commands() if _is_client(c) and _key(c) not in EXEMPT]
        assert len(clients) >= 10
        outputs = {c: _run(c, workspace, env, port, timeout=60) for c in clients}
    finally:
        server.stop()
    size_check = next(c for c in clients if "Image.open('out.png').size" in c)
    assert outputs[size_check].strip() == "(101, 75)"
    bits = next(c for c in clients if "x-bits-per-pixel" in c)
    assert "x-bits-per-pixel" in outputs[bits].lower()


def test_memory_command(workspace: Path, tmp_path: Path) -> None:
    """The RSS measurement: the server command, then the ps pipeline naming it by its command line."""
    env = _environment(tmp_path)
    port = free_port()
    commands = readme_commands()
    start = next(c for c in commands if _is_server(c) and "8123" in c)
    measure = next(c for c in commands if c.startswith("ps ") and "8123" in c)
    server = _Server(start, workspace, env, port)
    try:
        server.wait_ready()
        out = _run(measure, workspace, env, port, timeout=30)
    finally:
        server.stop()
    assert re.fullmatch(r"[1-9]\d* KiB", out.strip()), out


def test_the_other_commands(workspace: Path, tmp_path: Path) -> None:
    """Training, export, evaluation and the bench tools, in document order, on the fixtures."""
    env = _environment(tmp_path)
    rest = [
        c
        for c in readme_commands()
        if not _is_client(c) and not _is_server(c) and not c.startswith("ps ") and _key(c) not in EXEMPT
    ]
    assert rest, "nothing left to run"
    for command in rest:
        _run(_tiny(command), workspace, env, free_port(), timeout=120)
