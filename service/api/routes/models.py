"""Listing the model repository."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import RepositoryDep
from service.repository import LoadedModel, ModelRepository
from service.schemas import ErrorResponse, ModelInfo, ModelsResponse, ModelVersionInfo

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
        parity_max_abs_diff=m.parity_max_abs_diff,
        training={
            "data": m.training.data,
            "steps": m.training.steps,
            "wall_time_s": m.training.wall_time_s,
            "device": m.training.device,
            "final_validation": m.training.final_validation,
        },
    )


def _model_info(name: str, repository: ModelRepository) -> ModelInfo:
    versions = repository.models[name]
    return ModelInfo(
        name=name,
        default_version=max(versions),
        versions=[_version_info(versions[v]) for v in sorted(versions)],
        version_policy=str(repository.rules[name]),
        not_loaded_versions=repository.not_loaded.get(name, []),
    )


@router.get("", response_model=ModelsResponse, summary="List models")
async def list_models(repository: RepositoryDep) -> ModelsResponse:
    """Every loaded model: loaded versions (task, specs, operations, providers) and versions not loaded."""
    return ModelsResponse(models=[_model_info(name, repository) for name in sorted(repository.models)])


@router.get(
    "/{name}",
    response_model=ModelInfo,
    summary="Describe one model",
    responses={404: {"model": ErrorResponse}},
)
async def get_model_info(name: str, repository: RepositoryDep) -> ModelInfo:
    """One model: its loaded versions and those the version policy leaves on disk."""
    repository.get(name)  # 404 for an unknown name
    return _model_info(name, repository)
