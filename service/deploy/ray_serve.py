"""The service as a Ray Serve deployment: N replicas, each the app `create_app` builds, behind Ray's HTTP proxy.

    serve run service.deploy.ray_serve:build repository=models replicas=2 num_cpus=2
    serve run service.deploy.ray_serve:app        # one replica, settings from AE_* only

Every argument that is not the deployment's shape (`RayServeArgs`' fields) is a service setting, written
as its field name (`max_batch_size=8` is AE_MAX_BATCH_SIZE=8). A replica reads its settings from the
node's environment, overridden by the AE_* environment of the process that ran the builder, overridden
by those arguments. docs/ray-serve.md has the commands, how this relates to `ae-serve`, and the limits.

Ray is imported here only, and nothing else in `service` imports this module: the service runs without Ray.
"""

# No `from __future__ import annotations`: Ray converts `serve run` arguments to the builder's
# pydantic model only when the parameter's annotation is the class itself, not its name as a string.

import json
import math
import os
from typing import cast
from unittest import mock

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import SettingsError
from ray import serve
from ray.serve import Application, Deployment

from service.config import Settings
from service.startup import settings_problems, variable_of

# Settings a replica does not use: Ray's proxy owns the address and the connections (`serve start
# --http-host/--http-port`, or `http_options` in a Serve config file). The OIP gRPC server stays off in
# replicas: each would bind the same port on a node, beside Ray's routing and health checks.
_PROXY_SETTINGS = {"host", "port", "max_connections", "grpc_port"}
_READY = ("ready", "partial")


class RayServeArgs(BaseModel):
    """Arguments of `build`: the deployment's shape, then any service setting by its field name."""

    model_config = ConfigDict(extra="allow")

    replicas: int = Field(default=1, ge=1, description="replicas; each loads every model the policy names")
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs Ray reserves per replica")
    # With 0, Ray leaves CUDA_VISIBLE_DEVICES alone, so a replica would see every GPU of its node without
    # holding one: its providers then default to CPU only (an explicit AE_PROVIDERS still wins).
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs per replica (0.5: two replicas share one)")
    # Ray's default (5) would cap a replica below what one micro-batch collects; the service's own
    # admission (AE_MAX_QUEUE per graph, 503 beyond it) is what should turn requests away.
    max_ongoing_requests: int = Field(default=128, ge=1, description="requests Ray sends one replica at once")

    @model_validator(mode="after")
    def _only_settings_beside(self) -> "RayServeArgs":
        for name in self.model_extra or {}:
            if name in _PROXY_SETTINGS:
                raise ValueError(f"{name}: Ray's HTTP proxy owns the address (`serve start --http-host/--http-port`)")
            if name not in Settings.model_fields:
                raise ValueError(
                    f"{name}: neither a deployment argument ({', '.join(type(self).model_fields)}) nor a setting"
                )
        return self

    def settings_environment(self) -> dict[str, str]:
        """The setting arguments as the AE_* variables they stand for (lists and flags as JSON)."""
        extra = self.model_extra or {}
        return {variable_of(name): v if isinstance(v, str) else json.dumps(v) for name, v in extra.items()}


def replica_environment(passed: dict[str, str], num_cpus: float, num_gpus: float) -> dict[str, str]:
    """The AE_* variables a replica sets: those passed, plus what a replica needs unlike one server.

    - AE_WORKERS: how many replicas of this size fit on the node. The service divides the cores (image
      graphs' intra-op threads) and the memory (the derived pixel limit) by it, as among `ae-serve`'s
      workers; Ray reserves CPUs but does not pin them, so a replica sees every core of its node.
    - AE_THREAD_SPINNING=false: spinning intra-op threads would take cores from the other replicas.
    - AE_PROVIDERS CPU only when the replica holds no GPU (see `RayServeArgs.num_gpus`).
    - AE_GRPC_PORT=0 always (see `_PROXY_SETTINGS`), even where the node's environment sets it.
    """
    current = {**os.environ, **passed}
    defaults = {
        "AE_WORKERS": str(max(1, len(os.sched_getaffinity(0)) // max(1, math.ceil(num_cpus)))),
        "AE_THREAD_SPINNING": "false",
    }
    if num_gpus == 0:
        defaults["AE_PROVIDERS"] = '["CPUExecutionProvider"]'
    return {**{k: v for k, v in defaults.items() if k not in current}, **passed, "AE_GRPC_PORT": "0"}


def checked_settings(program: str) -> Settings:
    """The settings from the environment, or ValueError with one line per mistake (as `ae-serve` words them)."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as error:
        raise ValueError("; ".join(f"{program}: {line}" for line in settings_problems(error))) from None


@serve.deployment(graceful_shutdown_timeout_s=30)  # as `ae-serve` gives in-flight requests
@serve.ingress()  # the app is built per replica, by __serve_build_asgi_app__
class ServiceReplica:
    """One replica: the app of `create_app`; Ray Serve runs its lifespan (loading, batchers) around it."""

    def __init__(self, environment: dict[str, str], num_cpus: float, num_gpus: float) -> None:
        # This process is the replica's own: its environment is where the service reads settings from.
        os.environ.update(replica_environment(environment, num_cpus, num_gpus))
        self._settings = checked_settings("ray-serve replica")
        self._app: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Ray after __init__; Ray then runs the app's lifespan startup before any request."""
        # Imported here, after the environment is set: `service.main` also builds a module-level app from it.
        from service.main import create_app

        self._app = create_app(self._settings)
        return self._app

    def check_health(self) -> None:
        """Raise unless ready as /health/ready means it: Ray routes only to replicas that pass.

        Ray calls it once after the lifespan startup (a replica failing it never gets traffic and is
        replaced) and then periodically (a replica that stops being ready is replaced).
        """
        state = self._app.state.service if self._app is not None else None
        readiness = state.readiness() if state is not None else "loading"
        if readiness not in _READY:
            failed = [f.key for f in state.repository.unserved()] if state and state.repository else []
            raise RuntimeError(f"not ready: {readiness}" + (f", failed: {', '.join(failed)}" if failed else ""))


def build(args: RayServeArgs) -> Application:
    """The application `serve run service.deploy.ray_serve:build KEY=VALUE ...` deploys."""
    environment = {k: v for k, v in os.environ.items() if k.startswith("AE_")} | args.settings_environment()
    # Settings mistakes stop `serve run` here, worded as `ae-serve` words them, not in every replica.
    with mock.patch.dict(os.environ, environment):
        checked_settings("ray-serve")
    # mypy does not apply class decorators: to it ServiceReplica is still the class, not a Deployment.
    deployment = cast(Deployment, ServiceReplica).options(
        num_replicas=args.replicas,
        max_ongoing_requests=args.max_ongoing_requests,
        ray_actor_options={"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
    )
    return deployment.bind(environment, args.num_cpus, args.num_gpus)


app = build(RayServeArgs())
