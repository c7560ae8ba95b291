"""Every error podlab raises, one tree, one root.

    PodlabError                      root; `exit_code` says how the CLI ends
    ├── CommandFailed                exit 1: `Lab.exec(..., check=True)` saw a non-zero exit
    ├── InputError                   exit 2: the user's file or flags are wrong
    │   ├── TopologyError            a topology file failed validation (all problems at once)
    │   ├── LabExistsError           deploy of a lab that already runs
    │   ├── LabNotFoundError         a command needs a lab that is not deployed
    │   ├── TopologyChanged          a lab's topology file says otherwise since its deploy
    │   └── NothingToVerify          the checks asked for select nothing in this lab
    └── EnvironmentProblem           exit 3: the host cannot do it; the message says what to do
        ├── DockerUnavailable        no daemon answers
        ├── NotRootError             netns work needs root
        ├── ImageError               an image cannot be built
        └── DeployError              a deploy failed half-way (after rolling back)
            ├── WiringError          a netlink operation failed
            ├── CniPluginError       a CNI plugin refused (its msg and details)
            └── RoutingError         a routing daemon did not start, answer or converge

A verification that finds a violation is not an error: it is a result, exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass


class PodlabError(Exception):
    """Root of podlab's errors."""

    exit_code = 1


class CommandFailed(PodlabError):
    def __init__(self, where: str, argv: list[str], code: int, output: str):
        self.code, self.output = code, output
        super().__init__(f"{' '.join(argv)} in {where} exited {code}:\n{output}")


class InputError(PodlabError):
    exit_code = 2


class EnvironmentProblem(PodlabError):
    exit_code = 3


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a topology file, located by YAML path (and line when known)."""

    path: str
    message: str
    line: int | None = None

    def render(self, file: str | None = None) -> str:
        where = file or "<topology>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path or '<root>'}: {self.message}"


class TopologyError(InputError):
    def __init__(self, file: str | None, problems: list[Problem]):
        self.file = file
        self.problems = problems
        lines = [p.render(file) for p in problems]
        head = f"{file or '<topology>'}: {len(problems)} problem(s)"
        super().__init__("\n".join([head, *lines]))


class LabExistsError(InputError):
    pass


class LabNotFoundError(InputError):
    pass


class TopologyChanged(InputError):
    """The topology file of a running lab was edited after its deploy: a plan made from it
    now would expect another lab than the one that runs."""


class NothingToVerify(InputError):
    """`verify --check ...` that yields no result: nothing proven must not pass."""


class DockerUnavailable(EnvironmentProblem):
    pass


class NotRootError(EnvironmentProblem):
    pass


class ImageError(EnvironmentProblem):
    pass


class DeployError(EnvironmentProblem):
    pass


class WiringError(DeployError):
    pass


class CniPluginError(DeployError):
    """A CNI plugin failed: non-zero exit, with the spec's error JSON when it printed one.

    `plugin` is the plugin's type (its binary's name), `command` ADD/DEL/CHECK/VERSION,
    `code`/`msg`/`details` the fields of the CNI error object (code None when the plugin
    printed none, msg then its stderr).
    """

    def __init__(self, message: str, *, plugin: str = "", command: str = "",
                 code: int | None = None, msg: str = "", details: str = ""):
        super().__init__(message)
        self.plugin, self.command = plugin, command
        self.code, self.msg, self.details = code, msg, details


class RoutingError(DeployError):
    pass
