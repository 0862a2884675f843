"""Object storage behind one interface: the filesystem (embedded default) and Supabase."""

from reelvault_common.storage.interface import (
    BucketNotFound,
    BucketRulesMismatch,
    BucketSpec,
    InvalidKey,
    ListedObject,
    MimeTypeNotAllowed,
    ObjectConflict,
    ObjectInfo,
    ObjectNotFound,
    ObjectStorage,
    PayloadTooLarge,
    StorageError,
    StreamLengthMismatch,
    TransientStorageError,
    Unauthorized,
)

__all__ = [
    "BucketNotFound",
    "BucketRulesMismatch",
    "BucketSpec",
    "InvalidKey",
    "ListedObject",
    "MimeTypeNotAllowed",
    "ObjectConflict",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStorage",
    "PayloadTooLarge",
    "StorageError",
    "StreamLengthMismatch",
    "TransientStorageError",
    "Unauthorized",
]
