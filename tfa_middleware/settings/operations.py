"""``operations:``: what the shop's operators read of the middleware: Prometheus metrics, a
readiness path for load balancers, and the addresses allowed to read either.

    operations:
      metrics: true                  # needs the metrics extra: pip install 'tfa-middleware[metrics]'
      metrics_path: /_tfa/metrics    # optional: served by the middleware (else the shop's /metrics)
      readiness_path: /_tfa/ready    # optional: 200 "ready" or 503 "not ready"
      allow: [10.0.0.0/8]            # who may read them; trusted_proxies may too; the rest: 404

The paths lie outside every interface's prefix (a request there is nobody's login), and are read
only from an allowed client address, as the middleware computes it behind ``trusted_proxies``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection
from typing import Annotated, Self

from pydantic import AfterValidator, StrictBool, StrictStr, model_validator

from .interfaces import InterfaceSettings, inside, path_problem
from .types import Networks, Section, invalid, raise_any


def _own_path(text: str) -> str:
    if problem := path_problem(text):
        raise invalid(problem)
    if text != "/" and text.endswith("/"):
        raise invalid("must not end with '/'")
    return text


OwnPath = Annotated[StrictStr, AfterValidator(_own_path)]


class OperationsSettings(Section):
    metrics: StrictBool = False
    metrics_path: OwnPath | None = None
    readiness_path: OwnPath | None = None
    allow: Networks = ()

    @model_validator(mode="after")
    def _usable(self) -> Self:
        found = []
        if self.metrics_path is not None and not self.metrics:
            found.append(("metrics_path", "needs metrics: true"))
        if self.metrics and importlib.util.find_spec("prometheus_client") is None:
            found.append(("metrics", "needs prometheus_client: pip install 'tfa-middleware[metrics]'"))
        if self.metrics_path is not None and self.metrics_path == self.readiness_path:
            found.append(("readiness_path", "must differ from metrics_path"))
        raise_any(found)
        return self

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.metrics_path, self.readiness_path) if p is not None)


def outside_interfaces(
    operations: OperationsSettings, interfaces: Collection[InterfaceSettings]
) -> list[tuple[str, str]]:
    """A path of ours inside an interface would need a login there: refused at load."""
    return [
        (f"operations.{key}", f"{path!r} is inside interfaces.{iface.name}.path_prefix {iface.path_prefix!r}")
        for key, path in (
            ("metrics_path", operations.metrics_path),
            ("readiness_path", operations.readiness_path),
        )
        if path is not None
        for iface in interfaces
        if iface.enabled and inside(path.lower(), iface.path_prefix)
    ]
