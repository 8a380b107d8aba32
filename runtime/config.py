"""``edgectl serve`` configuration: defaults < TOML file (``[serve]`` table) < ``EDGECTL_SERVE_*`` < flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgectl.config import check_known, env_values, load_toml
from edgectl.errors import ConfigError

from .backends import Device, SessionOptions
from .batching import BatchingConfig


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Everything the daemon needs; every limit in one place."""

    store: Path = Path("/var/lib/edgectl/models")
    bind: str = "127.0.0.1:8080"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    api_keys: Path | None = None
    #: Serve on a non-loopback address without API keys (only when explicitly asked).
    insecure: bool = False
    threads: int = 0  # 0: backend default (3 on a 4-core Pi, leaving a core for HTTP)
    device: str = "cpu"
    instances: int = 1
    max_batch_size: int = 8
    max_queue_delay_ms: float = 2.0
    max_queue: int = 64
    max_body_bytes: int = 16 << 20
    request_timeout_s: float = 30.0
    rate_limit: float = 0.0  # requests/s per key (0: off)
    rate_burst: float = 0.0  # 0: same as rate_limit (at least 1)
    limit_concurrency: int = 256
    poll_interval_s: float = 1.0
    drain_timeout_s: float = 30.0
    drift_window: int = 1000
    #: Measure at load which batch size (up to max_batch_size) pays off on this device; off: always max_batch_size.
    batch_autotune: bool = True
    #: Python's GIL switch interval. Inference threads hand results to the event loop; the default 5 ms lets a busy
    #: loop keep them waiting that long per hand-off. 0.5 ms roughly doubled throughput at 32 clients in our runs.
    switch_interval_ms: float = 0.5
    #: Backend memory arena: off by default, so a large batch's buffers go back to the OS afterwards.
    memory_arena: bool = False
    #: Spinning intra-op threads: off by default, so they do not take CPU from the HTTP loop between runs.
    spinning: bool = False

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.bind.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--bind must be HOST:PORT, got {self.bind!r}.")
        return host.strip("[]") or "127.0.0.1", int(port)

    def session_options(self) -> SessionOptions:
        try:
            device = Device(self.device)
        except ValueError:
            raise ConfigError(f"device must be one of {[d.value for d in Device]}, got {self.device!r}.") from None
        return SessionOptions(
            threads=self.threads, device=device, memory_arena=self.memory_arena, spinning=self.spinning
        )

    def batching(self) -> BatchingConfig:
        return BatchingConfig(
            max_batch_size=self.max_batch_size,
            max_queue_delay_ms=self.max_queue_delay_ms,
            max_queue=self.max_queue,
            instances=self.instances,
        )

    def validate(self) -> ServeConfig:
        self.host_port  # noqa: B018 - parses and raises ConfigError on a bad value
        for name in ("instances", "max_batch_size", "max_queue", "max_body_bytes", "limit_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key.")
        return self


def _coerce(field_type: Any, raw: Any, name: str) -> Any:
    kind = str(field_type)
    try:
        if "Path" in kind:
            return None if raw in (None, "") else Path(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            return str(raw).lower() in ("1", "true", "yes", "on")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"Option {name} has an invalid value {raw!r} (expected {kind}).") from None


def load_serve_config(
    *, config_file: Path | None, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ServeConfig:
    """Merge the sources. ``flags`` holds only the options given on the command line (None values are ignored).

    Raises :class:`ConfigError` for unknown keys or bad values.
    """
    known = {f.name: f.type for f in fields(ServeConfig)}
    merged: dict[str, Any] = {}
    if config_file is not None:
        table = load_toml(config_file, section="serve")
        check_known(table, set(known), where=str(config_file))
        merged.update(table)
    merged.update(env_values("serve", set(known), environ))
    merged.update({k: v for k, v in flags.items() if v is not None})
    values = {k: _coerce(known[k], v, k) for k, v in merged.items()}
    return dataclasses.replace(ServeConfig(), **values).validate()
