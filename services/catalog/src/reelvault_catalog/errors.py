"""What the repositories refuse, in the catalog's reply codes (the handlers pass them on)."""

from __future__ import annotations

from reelvault_common.contracts.catalog import CatalogErrorCode


class CatalogRefusal(Exception):
    """A request the catalog answers with an error code, not a failure (``message`` goes to
    the caller: it names what is missing or taken, never a secret)."""

    code: CatalogErrorCode = CatalogErrorCode.INVALID_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CatalogRefusal):
    code = CatalogErrorCode.NOT_FOUND


class AlreadyExists(CatalogRefusal):
    code = CatalogErrorCode.ALREADY_EXISTS


class Conflict(CatalogRefusal):
    """The request contradicts what is recorded (e.g. a video id reserved by another
    organization)."""

    code = CatalogErrorCode.INVALID_REQUEST
