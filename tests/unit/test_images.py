"""harness.host.images without a Docker daemon: hashing, context, rebuild decisions."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from podlab_unit_helpers import missing

from harness.errors import ImageError
from harness.host import images


@pytest.fixture
def fake_busybox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(b"not really busybox")
    monkeypatch.setattr(images, "find_busybox", lambda: path)
    # host executables (bird) need not be installed where unit tests run
    monkeypatch.setattr(images, "host_files_context", lambda entries: {
        images.ROOTFS + e.path.lstrip("/"): b"fake " + e.path.encode() for e in entries})
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


LDD_BIRD = """\
\tlinux-vdso.so.1 (0x00007ffd5d1f2000)
\tlibssh-gcrypt.so.4 => /lib/x86_64-linux-gnu/libssh-gcrypt.so.4 (0x00007f90aa80d000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f90aa62b000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f90aa9cc000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f90aa49d000)
"""


def test_parse_ldd_keeps_files_and_the_loader_not_the_vdso() -> None:
    assert images.parse_ldd(LDD_BIRD) == [
        "/lib/x86_64-linux-gnu/libssh-gcrypt.so.4", "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libz.so.1"]


def test_parse_ldd_refuses_a_missing_library() -> None:
    with pytest.raises(ImageError, match=r"libfoo\.so\.1 not found"):
        images.parse_ldd("\tlibfoo.so.1 => not found\n")


def test_parse_host_files() -> None:
    text = "# comment\n/usr/sbin/bird   bird2  # the daemon\n\n/usr/sbin/birdcl bird2\n"
    assert images.parse_host_files(text) == [images.HostFile("/usr/sbin/bird", "bird2"),
                                             images.HostFile("/usr/sbin/birdcl", "bird2")]
    with pytest.raises(ImageError, match="line 1"):
        images.parse_host_files("usr/sbin/bird bird2\n")


def test_missing_host_file_names_its_package(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="apt-get install -y bird2"):
        images.host_files_context([images.HostFile(str(tmp_path / "bird"), "bird2")])


def test_host_files_go_under_rootfs_with_their_libraries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe, lib = tmp_path / "sbin" / "tool", tmp_path / "lib" / "libx.so.1"
    for path, data in ((exe, b"ELF tool"), (lib, b"ELF lib")):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    monkeypatch.setattr(images, "shared_libraries", lambda binary: [str(lib)])
    files = images.host_files_context([images.HostFile(str(exe), "pkg")])
    assert files == {"rootfs" + str(exe): b"ELF tool", "rootfs" + str(lib): b"ELF lib"}
    with tarfile.open(fileobj=images._tar_context(files)) as tar:
        assert all(m.mode & 0o111 for m in tar.getmembers())


def test_bird_image_context_carries_its_host_files(fake_busybox: Path) -> None:
    files = images.context_files("bird", fake_busybox)
    assert "COPY rootfs/ /" in files["Dockerfile"].decode()
    assert {"rootfs/usr/sbin/bird", "rootfs/usr/sbin/birdcl"} <= set(files)


def test_a_static_binary_has_no_libraries() -> None:
    busybox = next((p for p in images.BUSYBOX_CANDIDATES if Path(p).is_file()), None)
    if busybox is None or not images._is_static_elf(Path(busybox).read_bytes()[:1 << 16]):
        missing("no static busybox on this host (make setup installs busybox-static)")
    assert images.shared_libraries(busybox) == []
