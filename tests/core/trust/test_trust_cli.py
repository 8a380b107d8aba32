"""``edgectl keys`` and ``edgectl repo`` through the root CLI: exit codes and messages."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from trust_helpers import make_bundle_tar

from edgectl.cli import cli


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    repo = tmp_path / "fleet-repo"
    result = run(
        "keys", "init", "--repo", repo, "--root-keys-dir", tmp_path / "offline-root", "--threshold", "root=2/3"
    )
    assert result.exit_code == 0, result.output
    return repo


def test_keys_init_creates_keys_and_metadata(repo_dir: Path, tmp_path: Path) -> None:
    assert (repo_dir / "metadata" / "1.root.json").is_file() and (repo_dir / "metadata" / "timestamp.json").is_file()
    assert len(list((tmp_path / "offline-root").glob("*.pem"))) == 3
    for role in ("targets", "snapshot", "timestamp", "director"):
        (key,) = (repo_dir / "keys" / role).glob("*.pem")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = run("keys", "init", "--repo", repo_dir)
    assert again.exit_code == 2 and "already holds a repository" in again.output


def test_keys_init_rejects_a_bad_threshold(tmp_path: Path) -> None:
    result = run("keys", "init", "--repo", tmp_path / "r", "--threshold", "root=3/2")
    assert result.exit_code == 2 and "threshold <= keys" in result.output
    assert not (tmp_path / "r").exists()


def test_repo_add_signs_bundles(repo_dir: Path, tmp_path: Path) -> None:
    tar = make_bundle_tar(tmp_path, "digits", 3)
    result = run("repo", "add", repo_dir, tar)
    assert result.exit_code == 0, result.output
    assert "signed digits/digits-3.tar" in result.output and "1 targets in the repository" in result.output
    missing = run("repo", "add", repo_dir, tmp_path / "nope.tar")
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_repo_status_warns_before_expiry(repo_dir: Path) -> None:
    quiet = run("repo", "status", repo_dir)
    assert quiet.exit_code == 0 and "warning" not in quiet.output
    assert "timestamp" in quiet.output and "2/3" in quiet.output
    warned = run("repo", "status", repo_dir, "--warn-within", "2d")
    assert warned.exit_code == 0
    assert "warning: timestamp: expires in 23h" in warned.output
    assert "warning: snapshot" not in warned.output


def test_keys_rotate_needs_the_offline_root_keys(repo_dir: Path, tmp_path: Path) -> None:
    refused = run("keys", "rotate", "--role", "targets", "--repo", repo_dir)
    assert refused.exit_code == 2 and "--root-keys-dir" in refused.output
    done = run("keys", "rotate", "--role", "targets", "--repo", repo_dir, "--root-keys-dir", tmp_path / "offline-root")
    assert done.exit_code == 0, done.output
    assert "rotated targets" in done.output and "root is now v2" in done.output
    assert (repo_dir / "metadata" / "2.root.json").is_file()


def test_repo_refresh(repo_dir: Path) -> None:
    idle = run("repo", "refresh", repo_dir)
    assert idle.exit_code == 0 and "nothing due" in idle.output
    forced = run("repo", "refresh", repo_dir, "--force")
    assert forced.exit_code == 0 and "re-signed targets, snapshot, timestamp" in forced.output
    due = run("repo", "refresh", repo_dir, "--within", "2d")
    assert due.exit_code == 0 and "re-signed timestamp" in due.output


def test_insecure_key_file_is_reported_with_the_fix(repo_dir: Path) -> None:
    (key,) = (repo_dir / "keys" / "timestamp").glob("*.pem")
    os.chmod(key, 0o644)
    result = run("repo", "refresh", repo_dir, "--force")
    assert result.exit_code == 4
    assert f"chmod 600 {key}" in result.output and "Traceback" not in result.output


def test_keys_init_with_hash_bins(tmp_path: Path) -> None:
    repo = tmp_path / "big-repo"
    assert run("keys", "init", "--repo", repo, "--hash-bins", "16").exit_code == 0
    assert len(list((repo / "metadata").glob("1.bins-*.json"))) == 16
    added = run("repo", "add", repo, make_bundle_tar(tmp_path, "digits", 1))
    assert added.exit_code == 0 and "1 targets in the repository" in added.output
    status = run("repo", "status", repo)
    assert "16 hash bins" in status.output
