"""Named domain errors: every rule the domain enforces fails with one of these."""

from __future__ import annotations


class ModelLedgerError(Exception):
    """Base class of every error the domain raises on purpose."""


class ValidationError(ModelLedgerError, ValueError):
    """A value breaks a rule of the domain (length, range, format)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelNotFoundError(ModelLedgerError, LookupError):
    """No model with that id exists (or the caller may not see it)."""


class ModelDeletedError(ModelLedgerError):
    """A deleted model accepts no further changes."""


class InvalidStatusTransitionError(ModelLedgerError):
    """The requested status change is not one of the documented transitions."""


class NameTakenError(ModelLedgerError):
    """The owner already has a non-deleted model with that name."""


class VersionConflictError(ModelLedgerError):
    """The write was based on a version of the model that is no longer current."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected version {expected}, current version is {actual}")
        self.expected = expected
        self.actual = actual


class ModelVersionNotFoundError(ModelLedgerError, LookupError):
    """The model has no version with that number (or its file was removed)."""


class VersionServingError(ModelLedgerError):
    """The version serves traffic: it cannot be removed until ``serving`` moves off it."""
