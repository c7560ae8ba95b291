"""Run a container's own program inside that container, without a round trip to Docker.

`docker exec` costs an API call, a containerd task and a runc start: a tenth of a second
of CPU or more between dockerd, containerd, the shim and runc, which intra-pod would pay
twice per pod (400 times in a lab of 200 pods). nsenter(1) enters the namespaces of the
container's main process (mount, so its root filesystem and its binaries; pid, ipc, uts,
net) and executes the program there, as `runc exec` does, in a few milliseconds. Unlike
`docker exec`, the process keeps podlab's own (root) capabilities and cgroup: it is
podlab's probe, not the application's.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from harness.errors import WiringError
from harness.host.netns import TOOL_PATH

# what Docker gives a container without an ENV PATH; podlab's images set PATH=/bin
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def argv(pid: int, program: Sequence[str]) -> list[str]:
    """nsenter's argv that runs `program` (found on the container's PATH) as a process of
    the container whose main process is `pid`."""
    nsenter = shutil.which("nsenter", path=TOOL_PATH) or shutil.which("nsenter")
    if not nsenter:
        raise WiringError("nsenter not found on the host; install util-linux (`make setup`)")
    return [nsenter, f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid",
            "--root", "--wd", "--", *program]


def spawn(pid: int, program: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start `program` in the container of `pid`; its stdout and stderr go to one pipe."""
    return subprocess.Popen(argv(pid, program), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={"PATH": CONTAINER_PATH})


def run(pid: int, program: Sequence[str], timeout: float) -> tuple[int, bytes]:
    """Run `program` in the container of `pid`: (exit code, stdout and stderr interleaved);
    on timeout it is killed and the code is -9."""
    proc = spawn(pid, program)
    return finish(proc, timeout)


def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, bytes]:
    """Wait for a spawned program: (exit code, output); killed after `timeout` seconds."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out or b""
