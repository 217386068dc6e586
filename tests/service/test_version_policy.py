import json
import logging
import shutil
from http import HTTPStatus
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from service.manifest import load_manifest
from service.policy import POLICY_FILE, VersionPolicy, VersionPolicyError, VersionRule, load_policy
from service.repository import ModelLoadError, ModelRepository, version_folders
from tests.conftest import ROOT
from tests.service.conftest import service_settings

# --- parsing ---------------------------------------------------------------------------------------


def _policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / POLICY_FILE
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("rule", "selected"),
    [
        pytest.param({"latest": 1}, [5], id="latest-1"),
        pytest.param({"latest": 2}, [3, 5], id="latest-2"),
        pytest.param({"latest": 9}, [1, 3, 5], id="latest-more-than-on-disk"),
        pytest.param({"all": True}, [1, 3, 5], id="all"),
        pytest.param({"specific": [5, 1]}, [1, 5], id="specific"),
        pytest.param({"specific": [3, 4]}, [3], id="specific-one-missing"),
    ],
)
def test_a_rule_selects_versions_on_disk(rule, selected):
    assert VersionRule.model_validate(rule).select([3, 1, 5]) == selected


def test_the_built_in_policy_is_latest_one_and_codecs_keep_every_version(tmp_path):
    policy = load_policy(tmp_path / POLICY_FILE, required=False)
    assert policy == VersionPolicy()
    assert str(policy.rule_for("image-conv", "reconstruct")) == "latest 1"
    assert str(policy.rule_for("image-codec-q1", "compress")) == "all"
    assert str(policy.rule_for("broken", None)) == "latest 1"


def test_a_model_entry_beats_its_task_which_beats_the_default(tmp_path):
    policy = load_policy(
        _policy_file(
            tmp_path,
            "[default]\nlatest = 2\n[tasks.embed]\nall = true\n[models.codec-x]\nspecific = [1]\n",
        ),
        required=True,
    )
    assert str(policy.rule_for("codec-x", "compress")) == "specific [1]"
    assert str(policy.rule_for("seq", "embed")) == "all"
    assert str(policy.rule_for("image", "reconstruct")) == "latest 2"
    # A section left out keeps its built-in value: codecs still keep every version.
    assert str(policy.rule_for("codec-y", "compress")) == "all"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[default]\nlatest = 0\n", r"default\.latest: Input should be greater than or equal to 1", id="n<1"
        ),
        pytest.param("[default]\nlatest = true\n", r"default\.latest: Input should be a valid integer", id="n-bool"),
        pytest.param("[default]\nlatest = 1.5\n", r"default\.latest: Input should be a valid integer", id="n-float"),
        pytest.param("[default]\nnewest = 1\n", r"default\.newest: unknown key", id="unknown-rule-key"),
        pytest.param("[defaults]\nlatest = 1\n", r"defaults: unknown key", id="unknown-section"),
        pytest.param("[default]\nlatest = 1\nall = true\n", r"default: a rule holds exactly one of", id="two-kinds"),
        pytest.param("[models.x]\n", r"models\.x: a rule holds exactly one of .*got \[\]", id="empty-rule"),
        pytest.param("[default]\nall = false\n", r"default\.all: Input should be True", id="all-false"),
        pytest.param(
            "[models.x]\nspecific = []\n", r"models\.x\.specific: List should have at least 1", id="no-versions"
        ),
        pytest.param("[models.x]\nspecific = [2, 2]\n", r"models\.x: specific lists a version twice", id="duplicate"),
        pytest.param(
            "[models.x]\nspecific = [0]\n", r"models\.x\.specific\.0: Input should be greater", id="version-0"
        ),
        pytest.param(
            "[tasks.dance]\nall = true\n", r"tasks\.dance\.\[key\]: Input should be 'compress'", id="bad-task"
        ),
        pytest.param(
            "[models.Bad_Name]\nall = true\n", r"models\.Bad_Name\.\[key\]: String should match", id="bad-name"
        ),
        pytest.param("[default\nlatest = 1\n", r"is not valid TOML", id="not-toml"),
    ],
)
def test_an_invalid_policy_file_is_refused_with_where_and_why(tmp_path, text, message):
    path = _policy_file(tmp_path, text)
    with pytest.raises(VersionPolicyError, match=message) as error:
        load_policy(path, required=False)
    assert str(path) in str(error.value)
    assert "errors.pydantic.dev" not in str(error.value)


def test_a_named_policy_file_must_exist(tmp_path):
    with pytest.raises(VersionPolicyError, match="not found"):
        load_policy(tmp_path / "nope.toml", required=True)


def test_the_committed_policy_loads_what_the_cards_promise():
    models = ROOT / "models"
    policy = load_policy(models / POLICY_FILE, required=True)
    assert set(policy.models) <= {p.name for p in models.iterdir() if p.is_dir()}
    chosen = {}
    for folder in sorted(p for p in models.iterdir() if p.is_dir()):
        versions = version_folders(folder)
        rule = policy.rule_for(folder.name, load_manifest(versions[-1]).task)
        chosen[folder.name] = rule.select([int(v.name) for v in versions])
    assert chosen["image-conv"] == [3] and chosen["ecg-embed"] == [2]
    # v6: the fast tier its card recommends, v7 the default; both with gray and fp16
    assert chosen["image-denoise"] == [6, 7]
    assert chosen["image-codec-q1"] == [2, 3, 4]  # v2 and v3 streams must still decode


# --- the service -----------------------------------------------------------------------------------


def _add_version(repo: Path, name: str, version: int) -> None:
    """A copy of `name/1` as `name/<version>` (same graphs, manifest renumbered)."""
    target = repo / name / str(version)
    shutil.copytree(repo / name / "1", target)
    manifest = target / "model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": version}))


@pytest.fixture(scope="module")
def repo(tiny_models, tmp_path_factory):
    """The tiny repository plus tiny-image v2, v3 and tiny-codec v2; tiny-seq has v1 and v2 already."""
    repo = tmp_path_factory.mktemp("policy") / "repo"
    shutil.copytree(tiny_models, repo)
    _add_version(repo, "tiny-image", 2)
    _add_version(repo, "tiny-image", 3)
    _add_version(repo, "tiny-codec", 2)
    return repo


POLICY = """
[default]
latest = 1
[models.tiny-image]
specific = [1, 3]
[models.tiny-gone]
all = true
"""


@pytest.fixture(scope="module")
def client(repo):
    policy = repo.parent / "policy.toml"
    policy.write_text(POLICY)
    with TestClient(create_app(service_settings(repo, version_policy=policy))) as client:
        yield client


def _loaded(repository: ModelRepository) -> dict[str, list[int]]:
    return {name: sorted(versions) for name, versions in repository.models.items()}


def test_the_service_loads_only_the_versions_the_policy_names(client):
    assert client.get("/health/ready").json() == {"ready": True, "status": "ready", "models": 7, "failed": []}
    repository = client.app.state.service.repository
    loaded = {"tiny-codec": [1, 2], "tiny-denoise": [1], "tiny-hyperprior": [1], "tiny-image": [1, 3], "tiny-seq": [2]}
    assert _loaded(repository) == loaded
    assert repository.not_loaded == {"tiny-image": [2], "tiny-seq": [1]}


def test_models_lists_loaded_versions_and_those_left_on_disk(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    image = models["tiny-image"]
    assert [v["version"] for v in image["versions"]] == [1, 3] and image["default_version"] == 3
    assert image["not_loaded_versions"] == [2] and image["version_policy"] == "specific [1, 3]"
    assert models["tiny-codec"]["not_loaded_versions"] == [] and models["tiny-codec"]["version_policy"] == "all"
    seq = client.get("/v1/models/tiny-seq").json()
    assert [v["version"] for v in seq["versions"]] == [2]
    assert seq["not_loaded_versions"] == [1] and seq["version_policy"] == "latest 1"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param(
            "/v1/models/tiny-seq/versions/1/encode",
            "model 'tiny-seq' version 1 exists, but the version policy does not load it; loaded versions: 2",
            id="not-loaded",
        ),
        pytest.param(
            "/v1/models/tiny-image/versions/2/encode",
            "model 'tiny-image' version 2 exists, but the version policy does not load it; loaded versions: 1, 3",
            id="between-loaded",
        ),
        pytest.param(
            "/v1/models/tiny-seq/versions/9/encode", "model 'tiny-seq' has no version 9; versions: 2", id="absent"
        ),
    ],
)
def test_an_unloaded_version_is_404_saying_the_policy_keeps_it_out(client, path, message):
    response = client.post(path, json={"sequences": [[1.0, 2.0, 3.0]]})
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"] == {"code": "not_found", "message": message}


def test_a_policy_naming_a_model_not_on_disk_is_a_warning(repo, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("service"), "propagate", True)  # the app's JSON logging turns it off
    policy = repo.parent / "gone.toml"
    policy.write_text("[models.tiny-gone]\nall = true\n[models.tiny-seq]\nspecific = [2, 7]\n")
    with caplog.at_level(logging.INFO, logger="service.repository"):
        repository = ModelRepository.load(service_settings(repo, version_policy=policy))
    assert _loaded(repository)["tiny-seq"] == [2]
    assert "version policy names model tiny-gone, which is not in" in caplog.text
    assert "version policy of model tiny-seq (specific [2, 7]) names versions not on disk: [7]" in caplog.text
    assert "model tiny-image: versions [1, 2] on disk are not loaded (version policy: latest 1)" in caplog.text


def test_without_a_policy_file_the_built_in_policy_applies(repo):
    repository = ModelRepository.load(service_settings(repo, version_policy=None))
    loaded = {"tiny-codec": [1, 2], "tiny-denoise": [1], "tiny-hyperprior": [1], "tiny-image": [3], "tiny-seq": [2]}
    assert _loaded(repository) == loaded


def test_the_repository_policy_file_is_read_and_ae_version_policy_overrides_it(repo, tmp_path, monkeypatch):
    own = tmp_path / "repo"
    shutil.copytree(repo, own)
    (own / POLICY_FILE).write_text("[default]\nall = true\n")
    repository = ModelRepository.load(service_settings(own, version_policy=None))
    assert _loaded(repository)["tiny-image"] == [1, 2, 3]
    override = tmp_path / "override.toml"
    override.write_text("[default]\nlatest = 2\n")
    monkeypatch.setenv("AE_VERSION_POLICY", str(override))
    settings = Settings(repository=own, providers=["CPUExecutionProvider"], intra_op_threads=1)
    assert settings.version_policy == override
    assert _loaded(ModelRepository.load(settings))["tiny-image"] == [2, 3]


def test_an_invalid_policy_stops_start_up_with_a_clear_message(repo, tmp_path):
    policy = _policy_file(tmp_path, "[models.tiny-seq]\nlatest = 0\n")
    with (
        pytest.raises(ModelLoadError, match=r"models\.tiny-seq\.latest: Input should be greater than or equal to 1"),
        TestClient(create_app(service_settings(repo, version_policy=policy))),
    ):
        pass


def test_a_missing_named_policy_stops_start_up(repo, tmp_path):
    with pytest.raises(ModelLoadError, match=r"version policy .*nope\.toml not found"):
        ModelRepository.load(service_settings(repo, version_policy=tmp_path / "nope.toml"))


def test_a_policy_that_loads_none_of_a_models_versions_is_a_failure(repo, tmp_path):
    policy = _policy_file(tmp_path, "[models.tiny-denoise]\nspecific = [4]\n")
    with TestClient(create_app(service_settings(repo, version_policy=policy))) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == HTTPStatus.SERVICE_UNAVAILABLE and ready.json()["failed"] == ["tiny-denoise"]
        failures = client.get("/v1/models").json()["failures"]
        reason = "version policy (specific [4]) loads none of the versions on disk [1]"
        assert failures == [{"model": "tiny-denoise", "version": None, "reason": reason}]
        response = client.post("/v1/models/tiny-denoise/reconstruct")
        assert response.status_code == HTTPStatus.NOT_FOUND
        assert "exists, but the version policy loads none of its versions" in response.json()["error"]["message"]
