"""Link: handshake, ping, retransmission, and one clear LinkError naming the port for every failure."""

from __future__ import annotations

import re
import time

import pytest
from cobs import cobs
from typer.testing import CliRunner

from chiploop.cli import app
from chiploop.errors import LinkError
from chiploop.firmware_bridge.board_sim import Board
from chiploop.firmware_bridge.link import Link, NoAnswerError
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
    with pytest.raises(LinkError, match=rf"^{url}: unknown protocol version 2\.1 \(host speaks 1\.3\)"):
        Link(url, hello_wait_s=1.0)


def test_silent_peer_is_a_link_error_naming_the_port(serve) -> None:
    url = serve(None)
    expected = rf"^{url}: no board answers HELLO within 0.5 s: nothing arrived from the board$"
    with pytest.raises(LinkError, match=expected):
        Link(url, hello_wait_s=0.5)


def corrupted(wire: bytes) -> bytes:
    """The frames of `wire`, each with one bit of its type flipped (their CRC no longer matches)."""
    out = b""
    for encoded in wire.split(b"\x00")[:-1]:
        body = bytearray(cobs.decode(encoded))
        body[1] ^= 1
        out += cobs.encode(bytes(body)) + b"\x00"
    return out


class Garbling:
    """A board whose answers all arrive corrupted from the `after`-th on (requests damaged: `requests`)."""

    def __init__(self, after: int = 1, requests: range = range(0)) -> None:
        self.board, self.after, self.requests, self.answers, self.received = Board(), after, requests, 0, 0

    def feed(self, data: bytes) -> bytes:
        self.received += data.count(b"\x00")
        out = self.board.feed(corrupted(data) if self.received in self.requests else data)
        self.answers += out.count(b"\x00")
        return corrupted(out) if self.answers >= self.after else out


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


def test_board_that_stops_answering_gives_up_saying_nothing_arrived(serve) -> None:
    url = serve(Flaky(after=2, drop=10**9))
    with Link(url, timeout=0.02, retries=2) as link:
        expected = (
            rf"^{url}: no response to PING \(channel 0, seq 2\) after 2 retransmissions in [\d.]+ s: "
            r"nothing arrived from the board$"
        )
        with pytest.raises(NoAnswerError, match=expected):
            link.ping()
        assert link.stats.retransmits == link.stats.timeouts == 2


def test_answers_that_arrive_corrupted_are_retransmitted_at_once_then_named(serve) -> None:
    url = serve(Garbling(after=2))  # the HELLO answered, every later answer corrupted
    with Link(url, timeout=5.0, retries=2) as link:
        expected = (
            rf"^{url}: no response to PING \(channel 0, seq 2\) after 2 retransmissions in 0\.\d+ s: "
            r"3 frames arrived corrupted \(3 crc\), none intact$"
        )
        with pytest.raises(NoAnswerError, match=expected):
            link.ping()
        assert link.stats.retransmits == 2 and link.stats.timeouts == 0  # none waited for its 5 s timer


def test_hello_answered_only_corrupted_says_so(serve) -> None:
    url = serve(Garbling())
    expected = (
        rf"^{url}: no board answers HELLO within 0.5 s: "
        r"(\d+) frames arrived corrupted \(\1 crc\), none intact$"
    )
    with pytest.raises(LinkError, match=expected):
        Link(url, hello_wait_s=0.5)


def test_a_request_the_board_received_damaged_is_retransmitted_on_its_nak_dropped(serve) -> None:
    garbling = Garbling(after=10**9, requests=range(3, 4))  # the 3rd frame (after 0x00 and HELLO) damaged
    with Link(serve(garbling), timeout=5.0) as link:
        t0 = time.monotonic()
        assert link.ping(b"x") > 0
        assert time.monotonic() - t0 < 1.0
        assert (link.stats.retransmits, link.stats.timeouts) == (1, 0)
    counters = garbling.board.counters
    assert counters["rx_crc_errors"] == 1 and counters["naks_sent"] == 1 and counters["duplicates"] == 0


def test_nak_is_a_link_error_with_its_code(serve) -> None:
    with Link(serve(Board())) as link:
        with pytest.raises(LinkError, match=r": board refused: NAK NOT_CONFIGURED for RUN") as info:
            link.request(Msg.RUN, RUN.pack(1, 0))
    assert info.value.code == Nak.NOT_CONFIGURED and link.stats.naks == 1


def test_host_version_constant_matches_the_doc() -> None:
    assert VERSION == 0x13  # docs/protocol.md: version 1.3


def test_a_lost_answer_is_retransmitted_as_soon_as_a_later_request_is_answered(serve) -> None:
    flaky = Flaky(after=3, drop=1)  # HELLO and the first PING answered, the second PING's answer lost
    with Link(serve(flaky), timeout=5.0) as link:
        t0 = time.monotonic()
        replies = link.request_many([(Msg.PING, bytes([i])) for i in range(10)])
        assert time.monotonic() - t0 < 1.0
    assert [r.payload for r in replies] == [bytes([i]) for i in range(10)]
    assert (link.stats.retransmits, link.stats.timeouts) == (1, 0) and flaky.board.counters["duplicates"] == 1


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
