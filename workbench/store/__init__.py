"""Persistence: metadata (SQLAlchemy Core), vectors (Chroma) and blobs (content-addressed files)."""

from workbench.store.blobs import BlobStore
from workbench.store.metadata import MetadataStore

__all__ = ["BlobStore", "MetadataStore"]
