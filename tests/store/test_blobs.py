import os

import pytest

from workbench.errors import NotFoundError
from workbench.store.blobs import BlobStore, sha256_of


def test_blobs_are_content_addressed_and_sharded(tmp_path):
    store = BlobStore(tmp_path)
    data = b"some image bytes"
    sha = sha256_of(data)
    path = store.put(data, sha, ".jpg")
    assert path == tmp_path / sha[:2] / sha[2:4] / f"{sha}.jpg"
    assert path.read_bytes() == data
    assert store.put(data, sha, ".jpg") == path  # idempotent
    assert store.read(sha, ".jpg") == data


def test_a_crash_while_writing_leaves_no_file_at_the_final_path(tmp_path, monkeypatch):
    store = BlobStore(tmp_path)
    data = b"x" * 1000
    sha = sha256_of(data)

    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put(data, sha, ".png")
    assert not store.exists(sha, ".png")
    assert list((tmp_path / "tmp").iterdir()) == []  # the partial temp file is removed


def test_a_missing_blob_says_what_to_do(tmp_path):
    with pytest.raises(NotFoundError, match="re-ingest"):
        BlobStore(tmp_path).read("ab" * 32, ".jpg")
