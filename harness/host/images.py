"""Build podlab's images locally (no registry is reachable, nothing is ever pulled).

Each image under ``images/<name>/`` is built ``FROM scratch`` with the host's static
busybox, which this module injects into an in-memory build context (so the 2 MB binary is
never written into the source tree). An image directory may also hold ``host-files``: host
executables (from the distribution's packages, e.g. bird2's ``/usr/sbin/bird``) that go
into the context under ``rootfs/<their path>``, each with exactly the shared libraries
``ldd`` names for it, so the Dockerfile's ``COPY rootfs/ /`` gives a FROM-scratch image a
dynamically linked program. The image carries the label ``io.podlab.context-hash``: a
sha256 over every context file including busybox and host files, so an image is rebuilt
only when its inputs change (a package upgrade on the host included).

The Docker client is passed in (``runtime`` owns the connection); only ``docker.errors`` is
imported here, lazily, to translate failures into :class:`ImageError`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import struct
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import labels
from harness.errors import ImageError

IMAGE_NAMES: tuple[str, ...] = ("node", "pause", "app", "bird", "frr")
REPOSITORY = "podlab"
HASH_LABEL = labels.CONTEXT_HASH
# Debian's busybox-static installs /bin/busybox; /usr/bin is the merged-/usr spelling.
BUSYBOX_CANDIDATES: tuple[str, ...] = ("/bin/busybox", "/usr/bin/busybox")
FIX_HINT = "install it with `apt-get install -y busybox-static` (or run `make setup`)"
HOST_FILES = "host-files"  # in an image directory: host executables the image carries
ROOTFS = "rootfs/"  # where the context keeps them: rootfs/usr/sbin/bird -> /usr/sbin/bird
LDD_TIMEOUT_S = 10.0

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
    if HOST_FILES in files:
        files.update(host_files_context(parse_host_files(files[HOST_FILES].decode())))
    return files


@dataclass(frozen=True)
class HostFile:
    """One line of ``host-files``: an executable of the host and the package that has it."""

    path: str
    package: str


def parse_host_files(text: str) -> list[HostFile]:
    """``PATH PACKAGE`` per line; ``#`` starts a comment."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        if len(line) != 2 or not line[0].startswith("/"):
            raise ImageError(f"{HOST_FILES} line {number}: write it `/ABSOLUTE/PATH PACKAGE`, "
                             f"not {raw.strip()!r}")
        out.append(HostFile(line[0], line[1]))
    return out


def parse_ldd(text: str) -> list[str]:
    """The absolute paths in ldd's output: ``libc.so.6 => /lib/.../libc.so.6 (0x..)`` and
    the loader ``/lib64/ld-linux-x86-64.so.2 (0x..)``; the vDSO has no file and is left out.
    A library ldd cannot find (``=> not found``) is an ImageError: the image would not run.
    """
    paths: list[str] = []
    for line in text.splitlines():
        name, arrow, target = line.strip().partition("=>")
        where = (target if arrow else name).strip().split(" (", 1)[0].strip()
        if arrow and where == "not found":
            raise ImageError(f"ldd: shared library {name.strip()} not found on this host")
        if where.startswith("/") and where not in paths:
            paths.append(where)
    return paths


def shared_libraries(binary: str) -> list[str]:
    """The shared libraries (loader included) ``binary`` loads, as ldd resolves them here."""
    try:
        done = subprocess.run(["ldd", binary], capture_output=True, text=True,
                              timeout=LDD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"cannot run ldd on {binary}: {exc}") from exc
    if done.returncode != 0:
        if "not a dynamic executable" in done.stdout + done.stderr:
            return []  # static: nothing to add
        raise ImageError(f"ldd {binary} failed: {(done.stderr or done.stdout).strip()}")
    return parse_ldd(done.stdout)


def host_files_context(entries: Iterable[HostFile]) -> dict[str, bytes]:
    """``rootfs/<path>`` -> contents, for each executable and every library it loads
    (a symlinked library is stored under the name ldd gave it, as a plain file)."""
    files: dict[str, bytes] = {}
    for entry in entries:
        for one in _expand(entry):
            for wanted in (one, *shared_libraries(one)):
                files.setdefault(ROOTFS + wanted.lstrip("/"), Path(wanted).read_bytes())
    return files


def _expand(entry: HostFile) -> list[str]:
    """The host files a `host-files` line names: a file, or (a path ending in `/`) every
    file of a directory, e.g. the extensions iptables loads at run time, which ldd does
    not see; `*` matches the architecture's directory (/usr/lib/*/xtables/)."""
    missing = ImageError(f"{entry.path} not found on this host; install it with "
                         f"`apt-get install -y {entry.package}` (or run `make setup`)")
    paths = sorted(glob.glob(entry.path)) if "*" in entry.path else [entry.path]
    if not paths:
        raise missing
    out: list[str] = []
    for text in paths:
        path = Path(text)
        if entry.path.endswith("/") and path.is_dir():
            out += [str(p) for p in sorted(path.iterdir()) if p.is_file()]
        elif path.is_file():
            out.append(str(path))
        else:
            raise missing
    return out


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
            # busybox and host executables must be executable; a fixed mtime keeps the
            # context reproducible.
            info.mode = 0o755 if rel == "busybox" or rel.startswith(ROOTFS) else 0o644
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


def _build_one(client: Any, name: str, files: dict[str, bytes], digest: str,
               nocache: bool = False) -> None:
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
            nocache=nocache,
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
    nocache: bool = False,
) -> list[str]:
    """Build each image whose context hash differs from its label; return the tags built.
    `force` builds them all; `nocache` without Docker's layer cache (a cold build)."""
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
        _build_one(client, name, files, digest, nocache)
        say(f"built {tag} in {time.monotonic() - started:.1f}s")
        built.append(tag)
    return built


def build_images(client: Any, force: bool = False, progress: Progress | None = None) -> list[str]:
    """Build every podlab image (all of them when ``force``); return the tags built."""
    return ensure_images(client, None, progress=progress, force=force)
