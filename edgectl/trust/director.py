"""Director-signed per-device desired state (Uptane's director role, DESIGN.md "Trust").

An instruction tells one device to run one signed target. It is canonical JSON (the encoding TUF signs) wrapped as
``{"signed": {...}, "signatures": [{"keyid": ..., "sig": ...}]}`` and signed with Ed25519 director key(s).

Where the device gets the director's public keys: ``targets.json`` delegates a role named ``director`` with an
*empty path list*. The delegation carries the director keys and threshold, so

* devices learn and update them through the normal TUF refresh (verified, rollback- and freeze-protected);
* the targets keys rotate the director key (``edgectl keys rotate --role director``), and root rotates the targets
  keys, so a stolen director key is revoked with one targets.json version;
* the empty path list means the director key can vouch for no target file: it can only *choose among* targets that
  the targets role signed, never add one.

:func:`verify_instruction` checks, in order, the signature threshold, the device id, the expiry and the sequence.
The client then checks that the named target is signed with the same length and hash.

Public API: :class:`HealthCheckPolicy`, :class:`DesiredState`, :func:`sign_instruction`,
:func:`verify_instruction`, :data:`MAX_INSTRUCTION_BYTES`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Signature, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Targets

from edgectl.errors import (
    BadSignature,
    ExpiredMetadata,
    ForeignDeviceInstruction,
    ReplayedInstruction,
)
from edgectl.trust.settings import DIRECTOR

TYPE = "edgectl-desired-state/1"
#: An instruction larger than this is refused before it is parsed.
MAX_INSTRUCTION_BYTES = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class HealthCheckPolicy:
    """How the agent decides that an activated model is healthy (the fleet agent applies it).

    Integers only: canonical JSON (what is signed) has no floats, so the error budget is in per-mille.
    """

    golden: bool = True
    probe_requests: int = 10
    max_error_permille: int = 0
    timeout_s: int = 120

    def to_json(self) -> dict[str, Any]:
        return {
            "golden": self.golden,
            "probe_requests": self.probe_requests,
            "max_error_permille": self.max_error_permille,
            "timeout_s": self.timeout_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HealthCheckPolicy:
        return cls(
            golden=bool(data["golden"]),
            probe_requests=int(data["probe_requests"]),
            max_error_permille=int(data["max_error_permille"]),
            timeout_s=int(data["timeout_s"]),
        )


@dataclass(frozen=True, kw_only=True)
class DesiredState:
    """What one device should run. ``target_sha256``/``target_length`` pin the exact signed bundle."""

    device_id: str
    deployment_id: str
    model: str
    version: int
    target_path: str
    target_sha256: str
    target_length: int
    sequence: int
    expires: datetime
    health_check: HealthCheckPolicy = field(default_factory=HealthCheckPolicy)
    #: The director's permission to go back to an older (still repository-signed) version.
    allow_rollback: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": TYPE,
            "device_id": self.device_id,
            "deployment_id": self.deployment_id,
            "model": self.model,
            "version": self.version,
            "target_path": self.target_path,
            "target_sha256": self.target_sha256,
            "target_length": self.target_length,
            "sequence": self.sequence,
            "expires": self.expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "health_check": self.health_check.to_json(),
            "allow_rollback": self.allow_rollback,
        }

    @classmethod
    def from_json(cls, data: Any) -> DesiredState:
        if not isinstance(data, dict) or data.get("_type") != TYPE:
            raise BadSignature(f"Not an edgectl instruction (expected _type {TYPE!r}).")
        try:
            expires = datetime.strptime(str(data["expires"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            state = cls(
                device_id=str(data["device_id"]),
                deployment_id=str(data["deployment_id"]),
                model=str(data["model"]),
                version=_positive_int(data["version"], "version"),
                target_path=str(data["target_path"]),
                target_sha256=str(data["target_sha256"]),
                target_length=_positive_int(data["target_length"], "target_length"),
                sequence=_positive_int(data["sequence"], "sequence"),
                expires=expires,
                health_check=HealthCheckPolicy.from_json(data["health_check"]),
                allow_rollback=data.get("allow_rollback") is True,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadSignature(f"Malformed instruction: {exc}.") from exc
        return state


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _canonical(signed: dict[str, Any]) -> bytes:
    text = encode_canonical(signed)
    if text is None:  # only when an output function is passed, which we never do
        raise BadSignature("Instruction could not be encoded canonically.")
    return text.encode("utf-8")


def sign_instruction(state: DesiredState, signers: Sequence[Signer]) -> bytes:
    """Return the signed instruction as JSON bytes (one signature per signer)."""
    signed = state.to_json()
    payload = _canonical(signed)
    signatures = [signer.sign(payload).to_dict() for signer in signers]
    return json.dumps({"signed": signed, "signatures": signatures}, sort_keys=True).encode("utf-8")


def verify_instruction(
    data: bytes, *, targets: Targets, device_id: str, last_sequence: int, now: datetime
) -> DesiredState:
    """Verify an instruction against the director keys delegated in trusted ``targets`` metadata.

    Args:
        data: the instruction as received.
        targets: the device's verified top-level targets metadata.
        device_id: this device's id.
        last_sequence: the highest sequence this device accepted so far (0 if none).
        now: the current time (aware).
    Returns:
        the verified desired state.
    Raises:
        BadSignature: malformed, unsigned, or signed by fewer than the director threshold of delegated keys.
        ForeignDeviceInstruction: addressed to another device.
        ExpiredMetadata: past its expiry.
        ReplayedInstruction: its sequence is not greater than ``last_sequence``.
    """
    if len(data) > MAX_INSTRUCTION_BYTES:
        raise BadSignature(f"Instruction is {len(data)} bytes, over the {MAX_INSTRUCTION_BYTES}-byte limit.")
    try:
        envelope = json.loads(data)
        signed = envelope["signed"]
        signatures = {}
        for raw in envelope["signatures"]:
            sig = Signature.from_dict(dict(raw))
            signatures[sig.keyid] = sig
        payload = _canonical(signed)
    except (ValueError, KeyError, TypeError, AttributeError, FormatError) as exc:
        raise BadSignature(f"Instruction is not a signed edgectl instruction: {exc}.") from exc
    try:
        targets.verify_delegate(DIRECTOR, payload, signatures)
    except UnsignedMetadataError as exc:
        raise BadSignature(
            f"Instruction is not signed by the director keys the repository delegates ({exc}); refusing it.",
            hint="If the director key was rotated, re-issue the instruction with the new key.",
        ) from exc
    except ValueError as exc:
        raise BadSignature(f"The repository delegates no director role ({exc}); cannot accept instructions.") from exc
    state = DesiredState.from_json(signed)
    if state.device_id != device_id:
        raise ForeignDeviceInstruction(
            f"Instruction for device {state.device_id!r} was delivered to {device_id!r}; refusing it.",
            hint="Check the broker ACL: a device must read only its own desired state.",
        )
    if state.expires <= now:
        raise ExpiredMetadata(
            f"Instruction {state.deployment_id} (sequence {state.sequence}) expired at "
            f"{state.expires:%Y-%m-%d %H:%M}Z.",
            hint="The controller must re-sign the desired state with a fresh expiry.",
        )
    if state.sequence <= last_sequence:
        raise ReplayedInstruction(
            f"Instruction sequence {state.sequence} is not newer than the last accepted ({last_sequence}): "
            "a replayed or stale instruction.",
        )
    return state
