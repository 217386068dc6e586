"""The KServe manifests in deploy/kserve: consistent with the service and the model repository.

Two levels. The hermetic tests run in the normal suite with PyYAML only (and the service package for
its routes and settings). The `kserve` tests build every manifest out of the KServe SDK's model classes
(and the `kubernetes` classes they hold), refusing any key a class does not know at any depth: the
generated clients drop unknown keys silently, so a typo such as `scaleMetrc` would otherwise pass.
They run in .venv-kserve (scripts/kserve_venv.sh) and are skipped where `kserve` is not importable:

    scripts/kserve_venv.sh && .venv-kserve/bin/python -m pytest -q -m kserve tests/deploy/test_kserve_manifests.py

No cluster is involved: nothing here proves that a cluster accepts or runs them.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KSERVE_DIR = ROOT / "deploy" / "kserve"
MODELS = ROOT / "models"
MANIFESTS = sorted(KSERVE_DIR.glob("*.yaml"))
RUNTIME = ("serving.kserve.io/v1alpha1", "ServingRuntime")
SERVICE = ("serving.kserve.io/v1beta1", "InferenceService")
MODELS_ANNOTATION = "autoencoder-service/models"
# Where KServe's storage initializer puts the storageUri's contents.
MOUNT = "/mnt/models"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _all_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in MANIFESTS for doc in _documents(path)]


def _of_kind(kind: tuple[str, str]) -> list[dict[str, Any]]:
    return [doc for _, doc in _all_documents() if (doc["apiVersion"], doc["kind"]) == kind]


def _runtime() -> dict[str, Any]:
    (runtime,) = _of_kind(RUNTIME)
    return runtime


def _container(runtime: dict[str, Any]) -> dict[str, Any]:
    (container,) = runtime["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def _served_models(service: dict[str, Any]) -> list[str]:
    return service["metadata"]["annotations"][MODELS_ANNOTATION].split()


def _default_models() -> set[str]:
    """Model folders whose card does not call them an example (seed-conv, seed-lstm are examples)."""
    return {card.parent.name for card in MODELS.glob("*/README.md") if "not a default" not in card.read_text().lower()}


def _service_id(doc: dict[str, Any]) -> str:
    return doc["metadata"]["name"]


# -- hermetic ---------------------------------------------------------------------------------------


def test_there_are_manifests_and_one_runtime() -> None:
    assert MANIFESTS, f"no manifests under {KSERVE_DIR}"
    assert len(_of_kind(RUNTIME)) == 1
    assert _of_kind(SERVICE)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in MANIFESTS])
def test_every_manifest_parses_with_an_expected_kind(path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        assert (doc.get("apiVersion"), doc.get("kind")) in (RUNTIME, SERVICE), path.name
        assert doc["metadata"]["name"]


@pytest.mark.parametrize("service", [pytest.param(s, id=_service_id(s)) for s in _of_kind(SERVICE)])
def test_inference_service_uses_the_runtime_and_existing_models(service: dict[str, Any]) -> None:
    runtime = _runtime()
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert "CHANGE-ME" in model["storageUri"], "the example bucket must stay visibly an example"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    names = _served_models(service)
    assert names and len(names) == len(set(names))
    for name in names:
        assert sorted((MODELS / name).glob("*/model.json")), f"{name}: no models/{name}/VERSION/model.json"


def test_every_default_model_has_exactly_one_http_inference_service() -> None:
    served: list[str] = []
    for service in _of_kind(SERVICE):
        if service["spec"]["predictor"]["model"]["protocolVersion"] == "v2":
            served += _served_models(service)
    assert sorted(served) == sorted(_default_models())


def test_serverless_services_scale_on_concurrency() -> None:
    for service in _of_kind(SERVICE):
        predictor = service["spec"]["predictor"]
        if service["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode") == "RawDeployment":
            assert predictor["scaleMetric"] in ("cpu", "memory"), "raw deployments scale with an HPA"
        else:
            assert predictor["scaleMetric"] == "concurrency", _service_id(service)
        assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
        assert predictor["scaleTarget"] > 0


def test_runtime_ports_env_and_user_match_the_service_and_image() -> None:
    runtime = _runtime()
    container = _container(runtime)
    env = _env(container)
    (http,) = container["ports"]  # Knative routes one container port
    assert int(env["AE_PORT"]) == http["containerPort"]
    assert env["AE_REPOSITORY"] == MOUNT
    assert env["AE_HOST"] == "0.0.0.0"
    assert 1 <= int(env["AE_WORKERS"]) <= 2, "every worker loads its own CUDA sessions on the one GPU"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == http["containerPort"]
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == env["AE_PORT"]
    # gRPC: declared by the raw deployment that exposes it, on the port the runtime tells the service.
    grpc_ports = [
        port
        for service in _of_kind(SERVICE)
        if service["spec"]["predictor"]["model"]["protocolVersion"] == "grpc-v2"
        for port in service["spec"]["predictor"]["model"]["ports"]
    ]
    assert grpc_ports
    assert {int(env["AE_GRPC_PORT"])} == {port["containerPort"] for port in grpc_ports}
    assert int(env["AE_GRPC_PORT"]) != int(env["AE_PORT"])
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid is not None
    assert container["securityContext"]["runAsUser"] == int(uid.group(1))
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_probes_and_settings_exist_in_the_service() -> None:
    from service.config import Settings
    from service.main import app

    container = _container(_runtime())
    settings = {f"AE_{name.upper()}" for name in Settings.model_fields}
    names = set(_env(container))
    assert names <= settings, f"unknown settings: {sorted(names - settings)}"
    # The OpenAPI document lists every route, those of included routers too (app.routes does not).
    paths = set(app.openapi()["paths"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in paths


# -- strict, against the KServe SDK -------------------------------------------------------------------


class ManifestError(ValueError):
    """A manifest key or value that the SDK's model classes do not accept."""


_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (float, int)}


def _model_class(name: str) -> type:
    import kserve.models
    import kubernetes.client.models

    cls = getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name, None)
    if cls is None:
        raise ManifestError(f"no SDK model class {name}")
    return cls


def _build(value: Any, type_name: str, where: str) -> Any:
    """`value` as an instance of the SDK type `type_name`, refusing unknown keys and wrong types."""
    if match := re.fullmatch(r"(?:list|List)\[(.+)\]", type_name):
        if not isinstance(value, list):
            raise ManifestError(f"{where}: expected a list, got {value!r}")
        return [_build(item, match.group(1), f"{where}[{i}]") for i, item in enumerate(value)]
    if match := re.fullmatch(r"(?:dict\(str, (.+)\)|[Dd]ict\[str, (.+)\])", type_name):
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: expected a mapping, got {value!r}")
        inner = match.group(1) or match.group(2)
        return {key: _build(item, inner, f"{where}.{key}") for key, item in value.items()}
    if type_name == "object":  # int-or-string fields such as a probe's port
        return value
    if type_name in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[type_name]) or (type_name == "int" and isinstance(value, bool)):
            raise ManifestError(f"{where}: expected {type_name}, got {value!r}")
        return value
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: expected a {type_name} mapping, got {value!r}")
    attributes = {key: attr for attr, key in cls.attribute_map.items()}
    kwargs = {}
    for key, item in value.items():
        if key not in attributes:
            near = difflib.get_close_matches(key, attributes, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ManifestError(f"{where}: {type_name} has no field {key!r}{hint}")
        attr = attributes[key]
        kwargs[attr] = _build(item, cls.openapi_types[attr], f"{where}.{key}")
    try:
        return cls(**kwargs)  # the generated constructors check required fields and enums
    except (TypeError, ValueError) as error:
        raise ManifestError(f"{where}: {type_name}: {error}") from error


def _without_empty_strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_empty_strings(item) for key, item in value.items() if item != ""}
    if isinstance(value, list):
        return [_without_empty_strings(item) for item in value]
    return value


def _sdk_class_of(doc: dict[str, Any]) -> str:
    return {RUNTIME: "V1alpha1ServingRuntime", SERVICE: "V1beta1InferenceService"}[(doc["apiVersion"], doc["kind"])]


@pytest.fixture
def sdk() -> None:
    pytest.importorskip("kserve", reason="kserve not installed: run in .venv-kserve (scripts/kserve_venv.sh)")


@pytest.mark.kserve
@pytest.mark.parametrize(
    "doc", [pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}") for path, doc in _all_documents()]
)
def test_manifest_is_exactly_an_sdk_object(sdk: None, doc: dict[str, Any]) -> None:
    obj = _build(doc, _sdk_class_of(doc), doc["kind"])
    # Nothing was dropped on the way: the SDK's own serialisation gives the manifest back (less the
    # empty strings some constructors default to, e.g. a model spec's `name`).
    from kserve import ApiClient

    assert _without_empty_strings(ApiClient().sanitize_for_serialization(obj)) == doc


def _misspell(doc: dict[str, Any], path: tuple[str | int, ...], wrong: str) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    parent = bad
    for step in path[:-1]:
        parent = parent[step]
    parent[wrong] = parent.pop(path[-1])
    return bad


@pytest.mark.kserve
@pytest.mark.parametrize(
    ("kind", "path", "wrong"),
    [
        pytest.param(SERVICE, ("spec", "predictor", "scaleMetric"), "scaleMetrc", id="predictor-scaleMetrc"),
        pytest.param(SERVICE, ("spec", "predictor", "model", "storageUri"), "storageURI", id="model-storageURI"),
        pytest.param(
            RUNTIME,
            ("spec", "containers", 0, "readinessProbe", "httpGet", "path"),
            "paht",
            id="runtime-probe-httpGet-paht",
        ),
        pytest.param(RUNTIME, ("spec", "supportedModelFormats", 0, "autoSelect"), "autoselect", id="format-autoselect"),
    ],
)
def test_a_misspelt_key_fails(sdk: None, kind: tuple[str, str], path: tuple[str | int, ...], wrong: str) -> None:
    doc = _of_kind(kind)[0]
    _build(doc, _sdk_class_of(doc), doc["kind"])  # the original passes
    with pytest.raises(ManifestError, match=re.escape(repr(wrong))):
        _build(_misspell(doc, path, wrong), _sdk_class_of(doc), doc["kind"])


@pytest.mark.kserve
def test_a_wrongly_typed_value_fails(sdk: None) -> None:
    doc = copy.deepcopy(_of_kind(SERVICE)[0])
    doc["spec"]["predictor"]["scaleTarget"] = "10"
    with pytest.raises(ManifestError, match="scaleTarget: expected int"):
        _build(doc, _sdk_class_of(doc), doc["kind"])
