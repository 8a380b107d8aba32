"""python-tuf's exceptions -> edgectl's errors named after the attack they stopped.

python-tuf raises by *what failed* (a version number, a signature, a length); a person on call needs *what it
means*. The stage decides too: a length mismatch in metadata means metadata from another snapshot (mix-and-match),
in a target it means tampered bytes.

Public API: :func:`map_metadata_error`, :func:`map_target_error`.
"""

from __future__ import annotations

import re

from tuf.api import exceptions as tuf_exc

from edgectl.errors import (
    BadSignature,
    EdgectlError,
    EndlessDataAttack,
    FreezeAttack,
    MixAndMatchAttack,
    RollbackAttack,
    SlowRetrievalAttack,
    TamperedTarget,
    TransientError,
    TrustError,
)

NOTHING = "Nothing was installed and the trusted state did not change."
# python-tuf's BadVersionNumberError messages that mean "this file is not the version the signed snapshot /
# timestamp names" rather than "this version is older than one already trusted".
_MISMATCH_RE = re.compile(r"^Expected (snapshot version \d+, got \d+|[\w.-]+ v\d+, got v\d+\.)")


def map_metadata_error(exc: Exception) -> EdgectlError:
    """Translate an error raised while refreshing or walking metadata."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, tuf_exc.ExpiredMetadataError):
        return FreezeAttack(
            f"Freeze attack stopped: {detail}. Someone may be replaying old metadata, or the repository was not "
            f"refreshed in time. {NOTHING}",
            hint="On the repository run: edgectl repo refresh <repo>",
        )
    if isinstance(exc, tuf_exc.BadVersionNumberError):
        if _MISMATCH_RE.match(detail):
            return MixAndMatchAttack(
                f"Mix-and-match attack stopped: {detail}; the file is not the one the signed snapshot names. {NOTHING}"
            )
        return RollbackAttack(
            f"Rollback attack stopped: {detail}; metadata older than what this device already trusts. {NOTHING}"
        )
    if isinstance(exc, tuf_exc.UnsignedMetadataError):
        return BadSignature(
            f"Bad signature: {detail}; the metadata is not signed by the threshold of trusted keys. {NOTHING}"
        )
    if isinstance(exc, tuf_exc.LengthOrHashMismatchError):
        return MixAndMatchAttack(
            f"Mix-and-match attack stopped: {detail}; the metadata file is not the one the signed snapshot/timestamp "
            f"names. {NOTHING}"
        )
    if isinstance(exc, tuf_exc.DownloadLengthMismatchError):
        return EndlessDataAttack(f"Endless data attack stopped: {detail}. {NOTHING}")
    if isinstance(exc, tuf_exc.SlowRetrievalError):
        return SlowRetrievalAttack(f"Slow retrieval stopped: {detail}. {NOTHING}", hint="Retry later.")
    if isinstance(exc, tuf_exc.DownloadError):
        return TransientError(f"Cannot reach the repository: {detail}. {NOTHING}", hint="Retry later.")
    return TrustError(f"Repository metadata failed verification: {detail}. {NOTHING}")


def map_target_error(exc: Exception, target_path: str) -> EdgectlError:
    """Translate an error raised while downloading the target file itself."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, tuf_exc.DownloadLengthMismatchError):
        return EndlessDataAttack(
            f"Endless data attack stopped: {target_path} is longer than its signed length ({detail}). {NOTHING}"
        )
    if isinstance(exc, tuf_exc.LengthOrHashMismatchError):
        return TamperedTarget(
            f"Tampered target stopped: {target_path} does not match its signed length and sha256 ({detail}). {NOTHING}"
        )
    return map_metadata_error(exc)
