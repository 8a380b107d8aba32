"""Security: API keys (hashed), admin-only repository API, rate limits, body limits, TLS, loopback by default."""

from __future__ import annotations

import datetime
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from edgectl.runtime.config import ServeConfig
from edgectl.runtime.daemon import check_security
from edgectl.runtime.security import KeyRing, TokenBucket
from edgectl.runtime.store import ModelStore
from runtime_helpers import Daemon

from edgectl.cli import cli
from edgectl.errors import ConfigError

INFER = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def add_key(keys_file: Path, name: str, *extra: str) -> str:
    r = CliRunner().invoke(cli, ["serve", "keys", "add", str(keys_file), "--name", name, *extra])
    assert r.exit_code == 0, r.output
    return r.stdout.strip().splitlines()[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    user = add_key(keys_file, "app")
    admin = add_key(keys_file, "agent", "--admin")
    return keys_file, user, admin


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, Path], keys: tuple[Path, str, str]
) -> Iterator[Daemon]:
    store = ModelStore(tmp_path_factory.mktemp("secure") / "models")
    store.install(bundles["v1"])
    args = ("--api-keys", str(keys[0]), "--rate-limit", "20", "--rate-burst", "20", "--max-body-bytes", "2000")
    with Daemon(store.root, *args) as d:
        yield d


def test_keys_file_holds_hashes_only_and_is_private(keys: tuple[Path, str, str]) -> None:
    keys_file, user, admin = keys
    text = keys_file.read_text()
    assert user not in text and admin not in text
    assert "app user sha256:" in text and "agent admin sha256:" in text
    assert stat.S_IMODE(os.stat(keys_file).st_mode) == 0o600
    r = CliRunner().invoke(cli, ["serve", "keys", "add", str(keys_file), "--name", "app"])
    assert r.exit_code == ConfigError.exit_code and "already has a key named 'app'" in r.output


def test_missing_or_wrong_key_is_401_and_probes_stay_open(secured: Daemon, keys: tuple[Path, str, str]) -> None:
    r = httpx.post(secured.url + "/v2/models/digits/infer", json=INFER)
    assert r.status_code == 401 and "missing" in r.json()["error"] and r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(secured.url + "/v2/models/digits/infer", json=INFER, headers={"X-API-Key": "edk_guess"})
    assert r.status_code == 401 and "not valid" in r.json()["error"]
    r = httpx.post(secured.url + "/v2/models/digits/infer", json=INFER, headers={"Authorization": f"Bearer {keys[1]}"})
    assert r.status_code == 200, r.text
    assert httpx.get(secured.url + "/v2/health/ready").status_code == 200
    assert httpx.get(secured.url + "/metrics").status_code == 401


def test_repository_api_needs_an_admin_key(secured: Daemon, keys: tuple[Path, str, str]) -> None:
    r = httpx.post(secured.url + "/v2/repository/models/digits/load", headers={"X-API-Key": keys[1]})
    assert r.status_code == 403 and "not an admin key" in r.json()["error"]
    r = httpx.post(secured.url + "/v2/repository/models/digits/load", headers={"X-API-Key": keys[2]})
    assert r.status_code == 200 and r.json()["state"] == "READY"


def test_body_over_the_limit_is_413_declared_or_streamed(secured: Daemon, keys: tuple[Path, str, str]) -> None:
    big = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.5] * 1000}]})
    h = {"X-API-Key": keys[2]}
    r = httpx.post(secured.url + "/v2/models/digits/infer", content=big, headers=h)
    assert r.status_code == 413 and "at most 2000 bytes" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b" " * 500

    r = httpx.post(secured.url + "/v2/models/digits/infer", content=chunks(), headers=h)
    assert r.status_code == 413


def test_rate_limit_answers_429_with_retry_after(secured: Daemon, keys: tuple[Path, str, str]) -> None:
    statuses = []
    with httpx.Client(base_url=secured.url, headers={"X-API-Key": keys[1]}) as c:
        for _ in range(60):
            r = c.get("/v2/models/digits")
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and "Rate limit" in r.json()["error"]
    assert 200 in statuses and 429 in statuses
    assert set(statuses) <= {200, 429}


def test_non_loopback_bind_without_keys_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    r = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "m"), "--bind", "0.0.0.0:18999"])
    assert r.exit_code == ConfigError.exit_code
    assert "Refusing to serve on 0.0.0.0 without API keys" in r.output and "Traceback" not in r.output
    # --insecure is the explicit way out (checked without binding: tests only ever listen on loopback).
    assert check_security(ServeConfig(bind="0.0.0.0:8080", insecure=True)) is None
    with pytest.raises(ConfigError):
        check_security(ServeConfig(bind="192.168.1.5:8080"))


def test_tls_when_given_a_certificate(tmp_path: Path, bundles: dict[str, Path]) -> None:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    store = ModelStore(tmp_path / "models")
    store.install(bundles["v1"])
    args = ("--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem"))
    with Daemon(store.root, *args, scheme="https") as d:
        r = httpx.post(d.url + "/v2/models/digits/infer", json=INFER, verify=False)
        assert r.status_code == 200 and r.json()["model_name"] == "digits"
        with pytest.raises(httpx.HTTPError):
            httpx.get(d.url.replace("https", "http") + "/v2/health/live")


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0)
    now = bucket.stamp
    assert bucket.take(now) == 0 and bucket.take(now) == 0
    assert bucket.take(now) == pytest.approx(0.5)  # empty: the next token is due in 1 / rate seconds
    assert bucket.take(now + 0.5) == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [("app user deadbeef", "expected '<name> <role> sha256:"), ("app root sha256:" + "0" * 64, "role must be")],
)
def test_malformed_keys_file_is_a_config_error(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# comment\n" + line + "\n")
    with pytest.raises(ConfigError, match=message):
        KeyRing.load(path)
