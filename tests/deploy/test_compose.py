"""The compose files pass every setting through, and set workers and GPU memory together on a GPU host."""

from __future__ import annotations

import yaml

from service.config import Settings
from tests.conftest import ROOT

# Settings compose must not pass from the operator's shell, and why.
NOT_PASSED = {
    "AE_HOST": "the image listens on 0.0.0.0; a shell's 127.0.0.1 would hide the service",
    "AE_MODEL_CONTROL_DIR": "ae-serve sets it for its workers",
    "AE_WORKER_SLOTS_DIR": "ae-serve sets it for its workers",
    "AE_STRICT_MODELS": "removed; setting it stops the service with a message",
}


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's own tags (`!reset`, `!override`) read as plain values."""


_ComposeLoader.add_multi_constructor("!", lambda loader, tag, node: None)


def _environment(name: str) -> dict[str, object]:
    compose = yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)
    return compose["services"]["autoencoder"]["environment"]


def test_every_setting_is_passed_through_from_the_shell_or_env_file() -> None:
    environment = _environment("docker-compose.yml")
    settings = {f"AE_{field.upper()}" for field in Settings.model_fields}
    assert not NOT_PASSED.keys() - settings  # the exemptions are real settings
    assert sorted(settings - NOT_PASSED.keys() - environment.keys()) == []
    assert not NOT_PASSED.keys() & environment.keys()


def test_a_gpu_host_gets_few_workers_each_with_a_bounded_share_of_the_card() -> None:
    environment = _environment("docker-compose.yml")
    assert environment["AE_WORKERS"] == "${AE_WORKERS:-2}"
    assert environment["AE_GPU_MEMORY_LIMIT_MB"] == "${AE_GPU_MEMORY_LIMIT_MB:-6144}"
    cpu = _environment("docker-compose.cpu.yml")
    assert cpu["AE_WORKERS"] == "${AE_WORKERS:-0}" and cpu["AE_PROVIDERS"] == '["CPUExecutionProvider"]'


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [f"AE_{f.upper()}" for f in Settings.model_fields if f"`AE_{f.upper()}`" not in readme] == []
