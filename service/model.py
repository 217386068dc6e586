"""A loaded model version: its verified manifest, one engine per graph, and the handler that serves it.

The handler (`service.kinds`) is chosen by the model's kind when the version loads and owns the
request path for it: body parsing, the stages, and one micro-batcher per graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from service.codecs.entropy import LatentCoder
from service.engine import OnnxEngine
from service.errors import UnsupportedOperationError
from service.manifest import Manifest, graph_role

if TYPE_CHECKING:  # the handler modules import this one
    from service.kinds.base import ModelHandler


@dataclass
class LoadedModel:
    """A verified manifest and one engine per graph."""

    manifest: Manifest
    engines: dict[str, OnnxEngine]
    tables: LatentCoder | None = None
    gray_tables: LatentCoder | None = None  # a codec's gray variant's (see Manifest.gray_entropy_model)
    # "fp16" when the version runs its fp16 variant's graphs (service.repository.runs_fp16), else "fp32".
    precision: Literal["fp32", "fp16"] = "fp32"
    # Set by `service.repository.load_version` once the engines are warm.
    handler: ModelHandler = field(init=False, repr=False)

    @property
    def providers(self) -> list[str]:
        """Providers in use, merged over the graphs (CUDA first when any graph got it)."""
        merged: list[str] = []
        for engine in self.engines.values():
            merged += [p for p in engine.providers if p not in merged]
        return merged

    def require(self, operation: str) -> None:
        """409 `unsupported_operation` when the model does not offer the operation."""
        if operation not in self.manifest.operations:
            raise UnsupportedOperationError(
                f"model {self.manifest.name!r} does not support {operation!r}; "
                f"it supports {', '.join(self.manifest.operations)}"
            )

    @property
    def has_gray_variant(self) -> bool:
        """Whether single-channel images run on gray graphs of their own (else on the RGB graphs)."""
        return self.manifest.has_gray_variant

    def tables_for(self, gray: bool) -> LatentCoder:
        """A codec's tables for a 1-channel (`gray`) or 3-channel stream: its gray variant's for gray, when it has one.

        A codec trained on gray images alone (input channels 1, no variant) codes gray with its own tables.
        """
        tables = self.gray_tables if gray and self.has_gray_variant else self.tables
        assert tables is not None, "only codecs, and for gray only those with a gray variant, have tables"
        return tables

    def engine_for(self, operation: str, gray: bool = False) -> OnnxEngine:
        """The engine of the graph an operation runs (`encode` -> encoder, ...); 409 when absent.

        `gray` picks the gray variant's graph; a model without one runs gray images on its RGB graphs.
        """
        role = graph_role(operation, gray and self.has_gray_variant)
        if role not in self.engines:
            self.require(operation)
            raise UnsupportedOperationError(f"model {self.manifest.name!r} has no {role} graph")
        return self.engines[role]
