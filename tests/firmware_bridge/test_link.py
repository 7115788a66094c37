"""Link: handshake, ping, retransmission, and one clear LinkError naming the port for every failure."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from chiploop.cli import app
from chiploop.errors import LinkError
from chiploop.firmware_bridge.board_sim import Board
from chiploop.firmware_bridge.link import Link
from chiploop.firmware_bridge.protocol import (
    BOARD_CHANNEL,
    COUNTER_NAMES,
    COUNTERS,
    NO_REF,
    RUN,
    VERSION,
    ConfigNet,
    Flag,
    Frame,
    Msg,
    Nak,
    encode_frame,
)


def test_handshake_and_ping_on_pty_and_tcp(board_url: str) -> None:
    with Link(board_url) as link:
        assert link.info.max_payload == 240 and link.info.n_channels >= 1
        assert link.ping(bytes(range(200))) > 0
        assert link.stats.retransmits == 0 and link.stats.requests == 2


def test_cli_ping_and_info(board_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["board", "ping", board_url, "-n", "5"])
    assert result.exit_code == 0, result.output
    assert re.search(r"5 pings of 0 bytes: min [\d.]+ ms, median [\d.]+ ms, max [\d.]+ ms", result.output)
    result = runner.invoke(app, ["board", "info", board_url])
    assert result.exit_code == 0 and "DECAY_MULTIPLIER" in result.output and "max_neurons" in result.output


def test_nonexistent_port_is_one_line_naming_the_port() -> None:
    with pytest.raises(LinkError, match=r"^/dev/chiploop-nope: cannot open port: .*No such file"):
        Link("/dev/chiploop-nope")
    result = CliRunner().invoke(app, ["board", "ping", "/dev/chiploop-nope"])
    assert result.exit_code == 2
    assert result.output.startswith("error: /dev/chiploop-nope: cannot open port")
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_busy_port_is_refused(start_board) -> None:
    url = start_board("--pty").url
    with Link(url), pytest.raises(LinkError, match=rf"^{url}: cannot open port: .*lock"):
        Link(url)


def test_unknown_protocol_version_names_port_and_version(serve) -> None:
    url = serve(Board(version=0x21))
    with pytest.raises(LinkError, match=rf"^{url}: unknown protocol version 2\.1 \(host speaks 1\.1\)"):
        Link(url, hello_wait_s=1.0)


def test_silent_peer_is_a_link_error_naming_the_port(serve) -> None:
    url = serve(None)
    with pytest.raises(LinkError, match=rf"^{url}: no board answers HELLO within 0.5 s"):
        Link(url, hello_wait_s=0.5)


class Flaky:
    """A board whose answers are lost: `drop` answers in a row from the `after`-th on."""

    def __init__(self, after: int, drop: int) -> None:
        self.board, self.after, self.drop, self.n = Board(), after, drop, 0

    def feed(self, data: bytes) -> bytes:
        kept = []
        for frame in self.board.feed(data).split(b"\x00")[:-1]:
            self.n += 1
            if not self.after <= self.n < self.after + self.drop:
                kept.append(frame + b"\x00")
        return b"".join(kept)


def test_lost_answers_are_retransmitted_and_the_board_does_not_execute_twice(serve) -> None:
    flaky = Flaky(after=4, drop=3)  # HELLO, CONFIG_NET, RESET answered; RUN's answer lost 3 times
    with Link(serve(flaky), timeout=0.05) as link:
        link.request(Msg.CONFIG_NET, ConfigNet(2, 3, 1, 0, 0, 16, 12, 0, 0, 0).pack())
        link.request(Msg.RESET, b"\x00")
        done = link.request(Msg.RUN, RUN.pack(4, 0))
        raw = COUNTERS.unpack(link.request(Msg.READ_COUNTERS).payload)
    counters = dict(zip(COUNTER_NAMES, raw, strict=True))
    assert done.type == Msg.DONE and link.stats.retransmits == 3
    assert counters["ticks"] == 4 and counters["duplicates"] == 3


def test_board_that_stops_answering_gives_up_after_retries_and_rehello(serve) -> None:
    url = serve(Flaky(after=2, drop=10**9))
    with Link(url, timeout=0.02, retries=2) as link:
        expected = rf"^{url}: no response to PING after 3 tries; the board does not answer HELLO either$"
        with pytest.raises(LinkError, match=expected):
            link.ping()
        assert link.stats.rehellos == 1 and link.stats.retransmits == 2


def test_nak_is_a_link_error_with_its_code(serve) -> None:
    with Link(serve(Board())) as link:
        with pytest.raises(LinkError, match=r": board refused: NAK NOT_CONFIGURED for RUN") as info:
            link.request(Msg.RUN, RUN.pack(1, 0))
    assert info.value.code == Nak.NOT_CONFIGURED and link.stats.naks == 1


def test_host_version_constant_matches_the_doc() -> None:
    assert VERSION == 0x11  # docs/protocol.md: version 1.1


def test_request_many_keeps_a_window_in_flight_and_recovers_lost_answers(serve) -> None:
    flaky = Flaky(after=3, drop=2)  # HELLO and the first PING answered, the next two answers lost
    with Link(serve(flaky), timeout=0.05) as link:
        assert link.window == 4
        replies = link.request_many([(Msg.PING, bytes([i])) for i in range(10)])
    assert [r.payload for r in replies] == [bytes([i]) for i in range(10)]
    assert sorted({r.channel for r in replies}) == [0, 1, 2, 3]
    assert link.stats.retransmits == 2 and link.stats.requests == 11
    assert flaky.board.counters["duplicates"] == 2  # re-sent from the cache, not executed twice


class Chatty:
    """A board that sends an unsolicited LOG line before every answer."""

    def __init__(self) -> None:
        self.board = Board()

    def feed(self, data: bytes) -> bytes:
        log = encode_frame(Frame(Msg.LOG, b"tick", Flag.UNRELIABLE, BOARD_CHANNEL, 0, NO_REF))
        out = self.board.feed(data)
        return log + out if out else b""


def test_unsolicited_log_lines_are_kept_and_do_not_disturb_requests(serve) -> None:
    with Link(serve(Chatty())) as link:
        assert link.ping(b"x") > 0
    assert list(link.logs) == ["tick", "tick"] and link.stats.stale_responses == 0


def test_serve_takes_its_neuron_limit_from_a_profile(start_board) -> None:
    with Link(start_board("--tcp", "127.0.0.1:0", "--profile", "xylo").url) as link:
        assert link.info.max_neurons == 1008
