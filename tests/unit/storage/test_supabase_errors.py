"""Supabase Storage's error answers -> the typed errors of the storage interface."""

from __future__ import annotations

import json

import httpx
import pytest
from reelvault_common.storage import (
    BucketNotFound,
    InvalidKey,
    MimeTypeNotAllowed,
    ObjectNotFound,
    PayloadTooLarge,
    StorageError,
    TransientStorageError,
    Unauthorized,
)
from reelvault_common.storage.supabase_errors import (
    ObjectExists,
    ServerError,
    to_storage_error,
    transport_error,
)
from storage3.exceptions import StorageApiError


def rest(status: str, error: str, message: str = "m", http_status: int = 400) -> httpx.Response:
    body = {"statusCode": status, "error": error, "message": message}
    return httpx.Response(http_status, content=json.dumps(body).encode())


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (rest("404", "Bucket not found", "Bucket not found"), BucketNotFound),
        (rest("404", "not_found", "Object not found"), ObjectNotFound),
        (rest("409", "Duplicate", "The resource already exists"), ObjectExists),
        (rest("413", "Payload too large"), PayloadTooLarge),
        (rest("415", "invalid_mime_type", "mime type x/y is not supported"), MimeTypeNotAllowed),
        # Older releases refused multipart uploads of a wrong type as "400" "InvalidRequest".
        (rest("400", "InvalidRequest", "mime type not supported"), MimeTypeNotAllowed),
        (rest("403", "Unauthorized", "jwt expired"), Unauthorized),
        (rest("400", "InvalidJWT", "invalid signature"), Unauthorized),
        (rest("400", "InvalidKey", "Invalid key: a#b"), InvalidKey),
        (rest("500", "internal", "boom", http_status=500), TransientStorageError),
        (rest("503", "acquiring_lock_timeout", http_status=400), TransientStorageError),
        (rest("544", "DatabaseTimeout", http_status=544), TransientStorageError),
        (rest("429", "SlowDown"), TransientStorageError),
        (
            rest("409", "InvalidRequest", "The bucket you tried to delete is not empty"),
            StorageError,
        ),
        (httpx.Response(503, text="upstream connect error"), TransientStorageError),
        (httpx.Response(502, text="<html>bad gateway</html>"), TransientStorageError),
        # TUS: real statuses, plain-text messages.
        (httpx.Response(409, text="The resource already exists"), ObjectExists),
        (httpx.Response(413, text="Maximum size exceeded\n"), PayloadTooLarge),
        (httpx.Response(415, text="mime type image/png is not supported"), MimeTypeNotAllowed),
        (httpx.Response(404, text="Bucket not found"), BucketNotFound),
        (httpx.Response(403, text="new row violates row-level security policy"), Unauthorized),
        (httpx.Response(401, json={"message": "No API key found in request"}), Unauthorized),
        (httpx.Response(423, text="locked"), TransientStorageError),
    ],
)
def test_responses_map_to_typed_errors(
    response: httpx.Response, expected: type[StorageError]
) -> None:
    error = to_storage_error(ServerError.from_response(response), "put v/k")
    assert type(error) is expected
    assert error.message.startswith("put v/k: ")


def test_the_message_keeps_the_servers_words_and_status() -> None:
    error = to_storage_error(
        ServerError.from_response(rest("413", "Payload too large", "The object exceeded it")), "x"
    )
    assert error.message == "x: The object exceeded it (statusCode 413, Payload too large)"


def test_long_bodies_are_clipped() -> None:
    error = ServerError.from_response(httpx.Response(502, text="x" * 5000))
    assert len(error.message) < 400


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (StorageApiError("The resource already exists", "Duplicate", "409"), ObjectExists),
        (StorageApiError("Bucket not found", "Bucket not found", "404"), BucketNotFound),
        (StorageApiError("Object not found", "not_found", "404"), ObjectNotFound),
        # storage3 when the body did not parse: int HTTP status, code "InternalError".
        (
            StorageApiError("Unable to parse error message: oops", "InternalError", 503),
            TransientStorageError,
        ),
        (StorageApiError("Unable to parse error message: ", "InternalError", 400), StorageError),
    ],
)
def test_storage3_exceptions_map_too(exc: StorageApiError, expected: type[StorageError]) -> None:
    assert type(to_storage_error(ServerError.from_storage3(exc), "op")) is expected


def test_transport_errors_are_transient_and_name_no_headers() -> None:
    request = httpx.Request("GET", "http://s/object/b/k", headers={"apikey": "SECRET-KEY"})
    error = transport_error(httpx.ConnectError("connection refused", request=request), "read b/k")
    assert isinstance(error, TransientStorageError)
    assert "ConnectError" in error.message
    assert "SECRET-KEY" not in error.message
