"""The device profile stays small: the runtime never imports torch; config merges flags, env and TOML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from edgectl.runtime.config import load_serve_config

from edgectl.errors import ConfigError


def test_runtime_and_server_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import edgectl.runtime, edgectl.runtime.server, edgectl.runtime.daemon, edgectl.runtime.cli\n"
        "import edgectl.runtime.store, edgectl.runtime.manager, edgectl.runtime.backends\n"
        "edgectl.runtime.backends.available_backends()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'tensorflow'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"the runtime imported {out.stdout.strip()}"


def test_config_precedence_flags_over_env_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text('[serve]\nmax-batch-size = 4\nbind = "127.0.0.1:9000"\nmax_queue = 10\nthreads = 2\n')
    env = {"EDGECTL_SERVE_MAX_QUEUE": "20", "EDGECTL_SERVE_THREADS": "3"}
    cfg = load_serve_config(config_file=toml, flags={"threads": 1, "bind": None}, environ=env)
    assert (cfg.max_batch_size, cfg.bind, cfg.max_queue, cfg.threads) == (4, "127.0.0.1:9000", 20, 1)
    assert cfg.batching().max_batch_size == 4 and cfg.session_options().threads == 1


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[serve]\nmax_batch = 4\n", {}, "Unknown option(s) max_batch"),
        ("", {"EDGECTL_SERVE_MAX_QUEUE": "many"}, "invalid value 'many'"),
        ('[serve]\nbind = "localhost"\n', {}, "HOST:PORT"),
        ("[serve]\nmax_queue = 0\n", {}, "max_queue must be at least 1"),
        ('[serve]\ntls_cert = "c.pem"\n', {}, "both --tls-cert and --tls-key"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_serve_config(config_file=path, flags={}, environ=env)
    assert message in str(info.value)


def test_shipped_pi_config_and_systemd_unit_are_valid() -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    cfg = load_serve_config(config_file=deploy / "serve.toml", flags={}, environ={})
    assert cfg.host_port == ("127.0.0.1", 8080) and cfg.threads == 3 and cfg.api_keys is None
    unit = (deploy / "edgectl-serve.service").read_text()
    assert "ExecStart=/opt/edgectl/venv/bin/edgectl serve --config /etc/edgectl/serve.toml" in unit
    assert "[Install]" in unit and "KillSignal=SIGTERM" in unit
