"""Listing the model repository."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import RepositoryDep
from service.manifest import AnomalyCalibration
from service.repository import LoadedModel, ModelRepository
from service.schemas import AnomalyInfo, ErrorResponse, LoadFailureInfo, ModelInfo, ModelsResponse, ModelVersionInfo

router = APIRouter(prefix="/v1/models", tags=["models"])


def _version_info(model: LoadedModel) -> ModelVersionInfo:
    m = model.manifest
    return ModelVersionInfo(
        version=m.version,
        task=m.task,
        family=m.family,
        input=m.input,
        latent=m.latent,
        operations=m.operations,
        providers=model.providers,
        precision=model.precision,
        parity_max_abs_diff=m.parity_max_abs_diff,
        training={
            "data": m.training.data,
            "steps": m.training.steps,
            "wall_time_s": m.training.wall_time_s,
            "device": m.training.device,
            "final_validation": m.training.final_validation,
        },
        anomaly=_anomaly_info(m.anomaly),
        variable_rate=None if model.tables is None else model.tables.variable_rate,
    )


def _anomaly_info(calibration: AnomalyCalibration | None) -> AnomalyInfo | None:
    if calibration is None:
        return None
    return AnomalyInfo(threshold=calibration.threshold, quantile=calibration.quantile)


def _model_info(name: str, repository: ModelRepository) -> ModelInfo:
    versions = repository.models[name]
    return ModelInfo(
        name=name,
        default_version=repository.default_version(name),
        versions=[_version_info(versions[v]) for v in sorted(versions)],
        version_policy=str(repository.rules[name]),
        not_loaded_versions=repository.not_loaded.get(name, []),
        failed_versions=repository.failed_versions(name),
    )


@router.get("", response_model=ModelsResponse, summary="List models")
async def list_models(repository: RepositoryDep) -> ModelsResponse:
    """Every loaded model (versions, specs, operations, providers, versions left out); failures and reasons."""
    return ModelsResponse(
        models=[_model_info(name, repository) for name in sorted(repository.models)],
        failures=[LoadFailureInfo(model=f.model, version=f.version, reason=f.reason) for f in repository.failures],
    )


@router.get(
    "/{name}",
    response_model=ModelInfo,
    summary="Describe one model",
    responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def get_model_info(name: str, repository: RepositoryDep) -> ModelInfo:
    """One model: its loaded versions, those the version policy leaves on disk and those that failed."""
    if name not in repository.models:
        repository.get(name)  # raises: 404 for an unknown name, 503 when every version failed
    return _model_info(name, repository)
