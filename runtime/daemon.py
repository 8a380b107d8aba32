"""Start the daemon: check the security policy, assemble store, manager and app, and run uvicorn."""

from __future__ import annotations

import sys

from edgectl.errors import ConfigError, InputFileError
from edgectl.log import get_logger

from .config import ServeConfig
from .manager import ModelManager
from .metrics import RuntimeMetrics
from .security import KeyRing, is_loopback, key_file_mode_ok
from .server import HttpLimits, create_app
from .store import ModelStore

log = get_logger("edgectl.runtime.daemon")


def check_security(config: ServeConfig) -> KeyRing | None:
    """Load the API keys and refuse a non-loopback bind without them (unless ``insecure``).

    Raises :class:`ConfigError` when the policy is not met, :class:`InputFileError` for a missing keys file.
    """
    host, _ = config.host_port
    keys = KeyRing.load(config.api_keys) if config.api_keys is not None else None
    if keys is not None and not keys.keys:
        raise ConfigError(f"The API keys file {config.api_keys} holds no keys.", hint="Add one: edgectl serve keys add")
    if keys is not None and config.api_keys is not None and not key_file_mode_ok(config.api_keys):
        log.warning("%s is readable by other users; chmod 600 it", config.api_keys)
    if not is_loopback(host) and keys is None and not config.insecure:
        raise ConfigError(
            f"Refusing to serve on {host} without API keys: anyone on the network could use and replace models.",
            hint="Pass --api-keys FILE (create keys with 'edgectl serve keys add FILE'), or --insecure if you really "
            "mean it.",
        )
    if not is_loopback(host) and config.tls_cert is None:
        log.warning("serving on %s without TLS: API keys travel in clear text", host)
    for path in (config.tls_cert, config.tls_key):
        if path is not None and not path.is_file():
            raise InputFileError(f"TLS file {path} does not exist.")
    return keys


def serve(config: ServeConfig) -> None:
    """Run the daemon until SIGINT/SIGTERM. Raises :class:`ConfigError` for a bad configuration."""
    import uvicorn

    keys = check_security(config)
    if not config.store.is_dir():
        raise InputFileError(
            f"The model store {config.store} does not exist.",
            hint=f"Create it by installing a bundle: edgectl models install BUNDLE.tar --store {config.store}",
        )
    metrics = RuntimeMetrics()
    store = ModelStore(config.store, options=config.session_options())
    manager = ModelManager(
        store,
        options=config.session_options(),
        batching=config.batching(),
        metrics=metrics,
        poll_interval_s=config.poll_interval_s,
        drain_timeout_s=config.drain_timeout_s,
        drift_window=config.drift_window,
        autotune_batch=config.batch_autotune,
    )
    limits = HttpLimits(
        max_body_bytes=config.max_body_bytes,
        request_timeout_s=config.request_timeout_s,
        rate_limit=config.rate_limit,
        rate_burst=config.rate_burst,
    )
    _, asgi = create_app(manager, metrics, limits=limits, keys=keys)
    host, port = config.host_port
    if config.switch_interval_ms > 0:
        sys.setswitchinterval(config.switch_interval_ms / 1000.0)
    uv = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        limit_concurrency=config.limit_concurrency,
        timeout_graceful_shutdown=int(config.drain_timeout_s),
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(uv).run()
