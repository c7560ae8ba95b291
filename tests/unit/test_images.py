"""harness.host.images without a Docker daemon: hashing, context, rebuild decisions."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from harness.errors import ImageError
from harness.host import images


@pytest.fixture
def fake_busybox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(b"not really busybox")
    monkeypatch.setattr(images, "find_busybox", lambda: path)
    return path


class FakeImage:
    def __init__(self, digest: str, image_id: str = "sha256:old") -> None:
        self.labels = {images.HASH_LABEL: digest}
        self.id = image_id


class FakeImages:
    def __init__(self, existing: dict[str, FakeImage]) -> None:
        self.existing = existing
        self.built: list[dict[str, Any]] = []

    def get(self, tag: str) -> FakeImage:
        if tag not in self.existing:
            raise docker.errors.ImageNotFound(tag)
        return self.existing[tag]

    def build(self, **kwargs: Any) -> tuple[FakeImage, list[Any]]:
        self.built.append(kwargs)
        image = FakeImage(kwargs["labels"][images.HASH_LABEL], "sha256:new")
        self.existing[kwargs["tag"]] = image
        return image, []

    def remove(self, image_id: str) -> None:
        pass


class FakeClient:
    def __init__(self, existing: dict[str, FakeImage] | None = None) -> None:
        self.images = FakeImages(existing or {})


def test_every_image_has_a_dockerfile() -> None:
    for name in images.IMAGE_NAMES:
        text = (images.images_dir() / name / "Dockerfile").read_text()
        assert "FROM scratch" in text and "COPY busybox" in text


def test_hash_is_stable_and_covers_names_and_contents() -> None:
    base = {"Dockerfile": b"FROM scratch\n", "busybox": b"\x7fELF"}
    assert images.context_hash(base) == images.context_hash(dict(reversed(base.items())))
    assert images.context_hash(base) != images.context_hash({**base, "busybox": b"\x7fELG"})
    assert images.context_hash(base) != images.context_hash({**base, "extra": b""})


def test_context_tar_has_executable_busybox(fake_busybox: Path) -> None:
    files = images.context_files("node", fake_busybox)
    assert set(files) >= {"Dockerfile", "busybox"}
    with tarfile.open(fileobj=images._tar_context(files)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["busybox"].mode & 0o111
    assert members["Dockerfile"].size == len(files["Dockerfile"])


def test_static_elf_detection(tmp_path: Path) -> None:
    assert not images._is_static_elf(b"#!/bin/sh\n" + b"\0" * 100)
    dynamic = Path("/bin/sh").read_bytes()[: 1 << 16]
    assert not images._is_static_elf(dynamic)  # dash/bash are dynamically linked
    if Path("/bin/busybox").exists():
        assert images._is_static_elf(Path("/bin/busybox").read_bytes()[: 1 << 16])


def test_missing_images_dir_is_an_image_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODLAB_IMAGES_DIR", str(tmp_path / "nope"))
    with pytest.raises(ImageError, match="PODLAB_IMAGES_DIR"):
        images.images_dir()


def test_ensure_builds_missing_then_skips_up_to_date(fake_busybox: Path) -> None:
    client = FakeClient()
    messages: list[str] = []
    built = images.ensure_images(client, progress=messages.append)
    assert built == [images.image_tag(n) for n in images.IMAGE_NAMES]
    first = client.images.built[0]
    assert first["pull"] is False and first["custom_context"] is True
    assert isinstance(first["fileobj"], io.BytesIO)

    assert images.ensure_images(client) == []  # labels now match: nothing to do
    assert images.image_status(client) == {images.image_tag(n): "ok" for n in images.IMAGE_NAMES}
    assert images.build_images(client, force=True) == built


def test_stale_label_triggers_rebuild(fake_busybox: Path) -> None:
    tag = images.image_tag("pause")
    client = FakeClient({tag: FakeImage("outdated")})
    assert images.image_status(client, ["pause"]) == {tag: "stale"}
    assert images.ensure_images(client, ["pause"]) == [tag]


def test_unknown_image_name(fake_busybox: Path) -> None:
    with pytest.raises(ImageError, match="unknown image"):
        images.ensure_images(FakeClient(), ["bogus"])
