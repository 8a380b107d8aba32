"""The one error tree of edgectl.

Errors are split by what the caller should do about them, and each carries the exit code the CLI uses::

    EdgectlError                       1   something failed; the message says what to do
    ├── UserError                      2   fix the input and run again
    │   ├── InputFileError                 a file or folder is missing / unreadable / of the wrong kind
    │   ├── ConfigError                    a flag, TOML recipe or environment variable is wrong
    │   ├── ModelLoadError                 the model (or factory) cannot be loaded
    │   ├── SignatureError                 names, shapes or dtypes do not match the model's signature
    │   ├── CalibrationDataError           calibration / validation data is empty or of the wrong shape / dtype
    │   ├── UnsupportedOperatorError       an operator cannot be exported / converted (it is named)
    │   ├── OutputExistsError              the destination already holds that bundle (use --force)
    │   └── MissingDependencyError         an optional extra is not installed (the message names it)
    ├── QualityError                   3   a produced model misses a quality bar (accuracy drop, golden outputs)
    │   ├── AccuracyToleranceError         conversion: no candidate meets --max-accuracy-drop
    │   └── GoldenMismatchError            runtime: outputs on the golden inputs fall outside the tolerance
    ├── RejectedError                  4   refuse what was received; never retry it as is
    │   ├── BundleError                    the bundle is malformed, tampered, or holds unexpected files
    │   │   ├── ManifestError
    │   │   ├── IntegrityError             a file's sha256 or length differs from the manifest
    │   │   └── UnsafePathError            a path escapes the bundle, is a link, or is not listed
    │   ├── TrustError                     signed metadata failed verification (one subclass per attack)
    │   │   ├── BadSignature, UnsignedTarget, ExpiredMetadata, RollbackAttack, FreezeAttack,
    │   │   ├── MixAndMatchAttack, EndlessDataAttack, WrongTarget, ReplayedInstruction,
    │   │   ├── ForeignDeviceInstruction, InsecureKeyFile, IncompatibleTarget
    │   │   └── TamperedTarget             a target's bytes differ from their signed length / hashes
    │   └── RequestError                   an HTTP request is malformed (mapped to a 4xx)
    │       └── OverloadedError            the model's queue is full or it is not ready (429/503, Retry-After)
    ├── TransientError                 5   try again later (timeouts, busy, network)
    │   └── SlowRetrievalAttack            a download missed its deadline (slow retrieval is an attack too)
    └── StoreError                     6   the model store is inconsistent or locked
"""

from __future__ import annotations


class EdgectlError(Exception):
    """Base class. ``str(err)`` is a complete sentence a person can act on."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} {hint}")


# -- fix the input -------------------------------------------------------------------------------


class UserError(EdgectlError):
    exit_code = 2


class InputFileError(UserError):
    pass


class ConfigError(UserError):
    pass


class ModelLoadError(UserError):
    pass


class SignatureError(UserError):
    pass


class CalibrationDataError(UserError):
    pass


class UnsupportedOperatorError(UserError):
    def __init__(self, message: str, *, operators: list[str] | None = None, hint: str | None = None) -> None:
        self.operators = list(operators or [])
        super().__init__(message, hint=hint)


class OutputExistsError(UserError):
    pass


class MissingDependencyError(UserError):
    def __init__(self, package: str, *, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed.",
            hint=f"Install it with: pip install 'edgectl[{extra}]'",
        )


# -- quality bars ---------------------------------------------------------------------------------


class QualityError(EdgectlError):
    exit_code = 3


class AccuracyToleranceError(QualityError):
    def __init__(self, message: str, *, report: object | None = None, hint: str | None = None) -> None:
        self.report = report
        super().__init__(message, hint=hint)


class GoldenMismatchError(QualityError):
    pass


# -- reject what was received --------------------------------------------------------------------


class RejectedError(EdgectlError):
    exit_code = 4


class BundleError(RejectedError):
    pass


class ManifestError(BundleError):
    pass


class IntegrityError(BundleError):
    pass


class UnsafePathError(BundleError):
    pass


class RequestError(RejectedError):
    """A malformed request; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


class OverloadedError(RequestError):
    """The request was refused at once because of load (429) or readiness (503); retry after ``retry_after_s``."""

    def __init__(self, message: str, *, status: int = 429, retry_after_s: int = 1, hint: str | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, status=status, hint=hint)


class TrustError(RejectedError):
    """Signed metadata or an instruction failed verification. Subclasses name the attack stopped."""


class BadSignature(TrustError):
    pass


class UnsignedTarget(TrustError):
    pass


class ExpiredMetadata(TrustError):
    pass


class RollbackAttack(TrustError):
    pass


class FreezeAttack(ExpiredMetadata):
    pass


class MixAndMatchAttack(TrustError):
    pass


class EndlessDataAttack(TrustError):
    pass


class WrongTarget(TrustError):
    pass


class ReplayedInstruction(TrustError):
    pass


class ForeignDeviceInstruction(TrustError):
    pass


class InsecureKeyFile(TrustError):
    pass


class IncompatibleTarget(TrustError):
    pass


class TamperedTarget(TrustError):
    pass


# -- retry ---------------------------------------------------------------------------------------


class TransientError(EdgectlError):
    exit_code = 5


class SlowRetrievalAttack(TransientError):
    pass


# -- the store -----------------------------------------------------------------------------------


class StoreError(EdgectlError):
    exit_code = 6
