"""harness.host.bird without a daemon: BIRD's control-socket replies, parsed."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from harness.errors import RoutingError
from harness.host import bird

# as BIRD 2.0.12 answered on a node of the `routed` example (trimmed)
PROTOCOLS = """\
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     01:17:29.914  
 underlay   Direct     ---        up     01:17:29.914  
 kernel1    Kernel     master4    up     01:17:29.914  
 node1_eth1 BGP        ---        up     01:17:30.687  Established   
 spine_eth2 BGP        ---        start  01:17:31.000  Active        Socket: Connection refused
0000 
"""  # noqa: W291 (BIRD pads its columns)

ROUTES = """\
1007-Table master4:
 192.168.0.0/24       unicast [node1_eth1 01:17:30.688] (100) [AS64512i]
 \tvia 192.168.0.1 on eth1
1008-\tType: BGP univ
1012-\tBGP.origin: IGP
 \tBGP.as_path: 64512
 \tBGP.next_hop: 192.168.0.1
1007-10.42.0.0/24         unicast [node1_eth1 01:17:30.688] * (100) [AS64512i]
 \tvia 192.168.0.1 on eth1
1008-\tType: BGP univ
1012-\tBGP.origin: IGP
 \tBGP.as_path: 64512
1007-                     unicast [node2_eth1 01:17:30.892 from 192.168.0.2] (100) [AS64512i]
 \tvia 192.168.0.1 on eth1
1008-\tType: BGP univ
1012-\tBGP.origin: IGP
 \tBGP.as_path: 64513 64512
1007-10.42.2.0/24         unicast [spine_eth2 01:17:30.724] * (100) [AS64514i]
 \tvia 10.255.0.2 on eth2
1008-\tType: BGP univ
1012-\tBGP.as_path: 64516 64517 64514
0000 
"""  # noqa: W291


def replies(text: str) -> list[bird.Reply]:
    return bird.parse_replies(text.splitlines(keepends=True))


def test_continuation_lines_keep_their_code() -> None:
    got = replies(PROTOCOLS)
    assert [r.code for r in got] == [2002, 1002, 1002, 1002, 1002, 1002, 0]
    assert got[2].text.startswith("underlay")


def test_protocols_rows() -> None:
    rows = bird.parse_protocols(replies(PROTOCOLS))
    assert [p.name for p in rows] == ["device1", "underlay", "kernel1", "node1_eth1",
                                      "spine_eth2"]
    bgp = [p for p in rows if p.proto == "BGP"]
    assert (bgp[0].state, bgp[0].info) == ("up", "Established")
    assert (bgp[1].state, bgp[1].info) == ("start", "Active        Socket: Connection refused")


def test_routes_with_as_paths_and_the_best_one() -> None:
    rows = bird.parse_routes(replies(ROUTES))
    assert [(r.prefix, r.protocol, r.best) for r in rows] == [
        ("192.168.0.0/24", "node1_eth1", False), ("10.42.0.0/24", "node1_eth1", True),
        ("10.42.0.0/24", "node2_eth1", False), ("10.42.2.0/24", "spine_eth2", True)]
    assert rows[2].as_path == (64513, 64512)
    assert rows[3].as_path == (64516, 64517, 64514)
    assert (rows[3].via, rows[3].iface) == ("10.255.0.2", "eth2")


class FakeBird:
    """A control socket at <root>/run/bird/bird.ctl answering one canned reply."""

    def __init__(self, root: Path, answer: str):
        (root / "run" / "bird").mkdir(parents=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(root / "run" / "bird" / "bird.ctl"))
        self.sock.listen(1)
        self.answer = answer
        self.got: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rw") as fh:
            fh.write("0001 BIRD 2.0.12 ready.\n")
            fh.flush()
            self.got.append(fh.readline())
            fh.write(self.answer)
            fh.flush()


def test_command_over_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bird, "_host_path", lambda pid, path: str(tmp_path) + path)
    fake = FakeBird(tmp_path, PROTOCOLS)
    rows = bird.protocols(1)
    assert fake.got == ["show protocols\n"]
    assert len(rows) == 5


def test_an_error_reply_is_a_routing_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bird, "_host_path", lambda pid, path: str(tmp_path) + path)
    FakeBird(tmp_path, "9001 syntax error, unexpected CF_SYM_UNDEFINED\n")
    with pytest.raises(RoutingError, match="syntax error"):
        bird.command(1, "show nonsense")


def test_no_daemon_is_not_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bird, "_host_path", lambda pid, path: str(tmp_path) + path)
    assert not bird.alive(1)
