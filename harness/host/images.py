"""Build podlab's images locally (no registry is reachable, nothing is ever pulled).

Each image under ``images/<name>/`` is built ``FROM scratch`` with the host's static
busybox, which this module injects into an in-memory build context (so the 2 MB binary is
never written into the source tree). The image carries the label
``io.podlab.context-hash``: a sha256 over every context file including busybox, so an image
is rebuilt only when its inputs change.

The Docker client is passed in (``runtime`` owns the connection); only ``docker.errors`` is
imported here, lazily, to translate failures into :class:`ImageError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness import labels
from harness.errors import ImageError

IMAGE_NAMES: tuple[str, ...] = ("node", "pause", "app")
REPOSITORY = "podlab"
HASH_LABEL = labels.CONTEXT_HASH
# Debian's busybox-static installs /bin/busybox; /usr/bin is the merged-/usr spelling.
BUSYBOX_CANDIDATES: tuple[str, ...] = ("/bin/busybox", "/usr/bin/busybox")
FIX_HINT = "install it with `apt-get install -y busybox-static` (or run `make setup`)"

Progress = Callable[[str], None]


def image_tag(name: str) -> str:
    """``node`` -> ``podlab/node:latest``."""
    return f"{REPOSITORY}/{name}:latest"


def images_dir() -> Path:
    """The ``images/`` directory next to the package.

    ``harness/../images`` holds both in a source checkout and in an editable install
    (``pip install -e .`` imports the package from the checkout). ``PODLAB_IMAGES_DIR``
    overrides it, e.g. for a wheel install that has no source tree.
    """
    override = os.environ.get("PODLAB_IMAGES_DIR")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "images"
    if not path.is_dir():
        raise ImageError(
            f"image sources not found at {path}: run podlab from a source checkout "
            "(pip install -e .) or set PODLAB_IMAGES_DIR to the repository's images/ directory"
        )
    return path


def _is_static_elf(data: bytes) -> bool:
    """True for an ELF executable without a PT_INTERP header (i.e. statically linked).

    A dynamic busybox would not run in a FROM-scratch image (no libc, no loader), and the
    failure would only surface as an obscure ``exec format``/``no such file`` at build time.
    """
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return False
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            break
        (p_type,) = struct.unpack_from(endian + "I", data, off)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader
            return False
    return True


def find_busybox() -> Path:
    """The host's static busybox, or ImageError saying how to install it."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            with path.open("rb") as fh:
                head = fh.read(1 << 16)
            if _is_static_elf(head):
                return path
            raise ImageError(f"{path} is not a statically linked busybox; {FIX_HINT}")
    raise ImageError(f"no busybox found at {', '.join(BUSYBOX_CANDIDATES)}; {FIX_HINT}")


def context_files(name: str, busybox: Path | None = None) -> dict[str, bytes]:
    """Every file of ``images/<name>/`` plus ``busybox``, keyed by context-relative path."""
    root = images_dir() / name
    if not (root / "Dockerfile").is_file():
        raise ImageError(f"no Dockerfile for image {name!r} at {root / 'Dockerfile'}")
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        # A stray copy of busybox (older workflow, .gitignore'd) must not shadow the host's.
        if path.is_file() and rel != "busybox":
            files[rel] = path.read_bytes()
    files["busybox"] = (busybox or find_busybox()).read_bytes()
    return files


def context_hash(files: dict[str, bytes]) -> str:
    """sha256 over names and contents, order-independent and unambiguous."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _tar_context(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            # busybox must be executable; fixed mtime keeps the context reproducible.
            info.mode = 0o755 if rel == "busybox" else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _current_hash(client: Any, tag: str) -> str | None:
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot inspect image {tag}: {exc.explanation or exc}") from exc
    return (image.labels or {}).get(HASH_LABEL)


def image_status(client: Any, names: Iterable[str] | None = None) -> dict[str, str]:
    """``{tag: 'ok' | 'stale' | 'missing'}`` without building anything."""
    busybox = find_busybox()
    status: dict[str, str] = {}
    for name in names or IMAGE_NAMES:
        want = context_hash(context_files(name, busybox))
        have = _current_hash(client, image_tag(name))
        status[image_tag(name)] = "missing" if have is None else "ok" if have == want else "stale"
    return status


def _build_one(client: Any, name: str, files: dict[str, bytes], digest: str) -> None:
    import docker.errors

    tag = image_tag(name)
    try:
        old = client.images.get(tag).id
    except docker.errors.DockerException:
        old = None
    try:
        image, _logs = client.images.build(
            fileobj=_tar_context(files),
            custom_context=True,
            tag=tag,
            labels={HASH_LABEL: digest, labels.IMAGE: name},
            pull=False,  # FROM scratch: nothing to pull, and no registry is reachable anyway
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        tail = (
            "".join(str(line.get("stream") or line.get("error") or "") for line in exc.build_log)
            .strip()
            .splitlines()[-5:]
        )
        raise ImageError(f"building {tag} failed: {exc.msg}\n" + "\n".join(tail)) from exc
    except docker.errors.APIError as exc:
        raise ImageError(f"building {tag} failed: {exc.explanation or exc}") from exc
    # The previous build is now an untagged leftover; drop it unless a container uses it.
    if old and old != image.id:
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(old)


def ensure_images(
    client: Any,
    names: Iterable[str] | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> list[str]:
    """Build each image whose context hash differs from its label; return the tags built."""
    say = progress or (lambda _msg: None)
    busybox = find_busybox()
    built: list[str] = []
    for name in names or IMAGE_NAMES:
        if name not in IMAGE_NAMES:
            raise ImageError(f"unknown image {name!r}; known: {', '.join(IMAGE_NAMES)}")
        tag = image_tag(name)
        files = context_files(name, busybox)
        digest = context_hash(files)
        if not force and _current_hash(client, tag) == digest:
            say(f"{tag} up to date")
            continue
        say(f"building {tag}")
        started = time.monotonic()
        _build_one(client, name, files, digest)
        say(f"built {tag} in {time.monotonic() - started:.1f}s")
        built.append(tag)
    return built


def build_images(client: Any, force: bool = False, progress: Progress | None = None) -> list[str]:
    """Build every podlab image (all of them when ``force``); return the tags built."""
    return ensure_images(client, None, progress=progress, force=force)
