"""Link: a reliable request/response channel to a board over any pyserial URL (docs/protocol.md §2, §5).

Stop-and-wait per channel: a request waits for the response whose `ref` is its `seq`, the identical
bytes are retransmitted when it is lost and the board suppresses duplicates; `request_many` keeps
one independent request in flight on each of the board's channels, sending the next as soon as a
channel is answered. A request is retransmitted as soon as its loss shows (an answer to a request
sent after it, or an answer that arrived corrupted), else when its timeout expires; the timeout
follows the measured round-trip time (RFC 6298). The per-byte loss rate of the line sets how large
bulk frames should be (`payload_budget`). Every failure is a LinkError that names the port and
what was observed.
"""

from __future__ import annotations

import math
import select
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import serial

from chiploop.errors import LinkError
from chiploop.firmware_bridge.protocol import (
    BOARD_CHANNEL,
    HELLO,
    MAX_PAYLOAD,
    MIN_FRAME,
    NAK_HEAD,
    NO_REF,
    VERSION,
    Frame,
    FrameDecoder,
    HelloAck,
    HelloFlag,
    Msg,
    Nak,
    ProtocolError,
    encode_frame,
    nak_text,
    unpack_head,
    version_text,
)

HELLO_INTERVAL_S = 0.25
MAX_WINDOW = 8
POLL_S = 0.005
MIN_RTO_S = 0.005  # lowest retransmission timeout (a busy host delays answers by a few ms)
CLOCK_S = 0.001  # timer granularity (RFC 6298's G)
RETRIES = 16
# Cost of one exchange besides its payload, in wire bytes: the framing of a request and its answer
# (32) plus 64 for the per-frame turnaround (host, board, USB or socket). Goodput is flat near its
# optimum: at 1e-3 errors per byte the 150-byte frames this gives move 4 % more bytes than the
# byte-optimal 110-byte ones, but take 20 % fewer frames, which is what costs on a fast link.
FRAME_COST = 2 * (MIN_FRAME + 2) + 64
LOSS_MEMORY = 64  # transmissions the per-byte loss estimate averages over
CORRUPT = "corrupt"  # inbox marker: a frame arrived damaged and was dropped


class NakError(LinkError):
    """The board refused a request; `code` is the Nak code."""

    def __init__(self, port: str, code: int, text: str) -> None:
        self.code, self.text = code, text
        super().__init__(f"{port}: board refused: {text}")


class NoAnswerError(LinkError):
    """A request stayed unanswered through every retransmission; the message says what arrived meanwhile."""


@dataclass
class LinkStats:
    """Host-side counters of one Link.

    retransmits = timeouts (a timer expired) + early ones (the loss showed before the timer).
    """

    requests: int = 0
    retransmits: int = 0
    timeouts: int = 0
    naks: int = 0
    tx_bytes: int = 0
    rx_bytes: int = 0
    stale_responses: int = 0
    rx_dropped: dict[str, int] = field(default_factory=dict)


@dataclass
class RttEstimator:
    """Retransmission timeout from measured round trips (RFC 6298): srtt + 4 rttvar within
    [floor, ceiling]; doubled per timeout of the same request (a lost frame on a noisy line says
    nothing about the round-trip time, so other requests keep the estimate)."""

    initial: float
    floor: float
    ceiling: float
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = field(init=False)

    def __post_init__(self) -> None:
        self.rto = self.initial

    def sample(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(max(self.srtt + max(CLOCK_S, 4 * self.rttvar), self.floor), self.ceiling)

    def backed_off(self, timeouts: int) -> float:
        """The timeout of a request that already timed out `timeouts` times: doubled each time."""
        return min(self.rto * 2**timeouts, self.ceiling)


@dataclass
class LineLoss:
    """Per-byte loss of the line, `L = -ln(1 - q)`: a request and its answer, `n` bytes together,
    get through with probability `e^(-L n)`; estimated from the requests transmitted and the answers
    that arrived intact (duplicates included), exponentially weighted over about `memory`
    transmissions."""

    memory: float = LOSS_MEMORY
    transmissions: float = 0.0
    answers: float = 0.0
    request_bytes: float = 0.0
    answer_bytes: float = 0.0

    def sent(self, nbytes: int) -> None:
        keep = 1 - 1 / self.memory
        self.transmissions = keep * self.transmissions + 1
        self.request_bytes = keep * self.request_bytes + nbytes
        self.answers *= keep
        self.answer_bytes *= keep

    def answered(self, nbytes: int) -> None:
        self.answers += 1
        self.answer_bytes += nbytes

    @property
    def per_byte(self) -> float:
        if not self.answers or self.answers >= self.transmissions:
            return 0.0
        exchange = self.request_bytes / self.transmissions + self.answer_bytes / self.answers
        return -math.log(self.answers / self.transmissions) / exchange


@dataclass(frozen=True)
class _Arrivals:
    """The decoder's counts at one moment: frames dropped as damaged, by kind, and intact frames."""

    damaged: dict[str, int]
    intact: int

    def since(self, before: _Arrivals) -> str:
        """What arrived from the board between `before` and this moment, in words."""
        damaged = {k: n - before.damaged.get(k, 0) for k, n in self.damaged.items() if k != "version"}
        damaged = {k: n for k, n in damaged.items() if n}
        intact = self.intact - before.intact
        seen = []
        if damaged:
            kinds = ", ".join(f"{n} {kind}" for kind, n in damaged.items())
            seen.append(f"{_count(sum(damaged.values()), 'frame')} arrived corrupted ({kinds})")
        if intact:
            seen.append(f"{_count(intact, 'intact frame')}, none of them the answer")
        elif damaged:
            seen.append("none intact")
        return ", ".join(seen) if seen else "nothing arrived from the board"


@dataclass
class _Pending:
    """One request in flight on its channel."""

    index: int
    mtype: Msg
    channel: int
    seq: int
    wire: bytes
    first_sent: float
    seen_before: _Arrivals
    sent_at: float = 0.0
    order: int = 0  # transmission number of its last send (answers come back in transmission order)
    answer_order: int = 0  # of its earliest send whose answer may still arrive
    lost: bool = False  # every send so far is known lost
    deadline: float = 0.0
    retransmits: int = 0
    timeouts: int = 0


class Link:
    """A handshaken connection to a board at `url` (device path, `socket://host:port`, ...).

    timeout: a fixed retransmission timeout. Default: measured from the round trips (RFC 6298),
    at least MIN_RTO_S and at most `2 × (10 × 256 / baud) + 0.05` plus `2 × (10 × 256 / baud)` per
    further request in flight (the worst case of a full window at `baud`), where it also starts.
    retries: retransmissions of one request before giving up.
    hello_wait_s: how long to keep sending HELLO while the board boots.
    """

    def __init__(
        self,
        url: str,
        baud: int = 115200,
        timeout: float | None = None,
        retries: int = RETRIES,
        hello_wait_s: float = 5.0,
    ) -> None:
        self.url = url
        frame_time = 2 * 10 * 256 / baud  # one full frame out and one back, 10 bits a byte
        self.timeout = timeout if timeout is not None else frame_time + 0.05
        self._extra_per_request = frame_time if timeout is None else 0.0
        self._fixed_timeout = timeout
        self.retries = retries
        self.stats = LinkStats()
        self.logs: deque[str] = deque(maxlen=64)
        self.loss = LineLoss()
        self._decoder = FrameDecoder()
        self._inbox: deque[Frame | str] = deque()
        self._seqs = [0] * MAX_WINDOW
        self._order = 0
        try:
            self._port = serial.serial_for_url(url, baudrate=baud, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"{url}: cannot open port: {_reason(exc)}") from None
        _no_delay(self._port)
        try:  # wait on the descriptor, then read all that is there (a socket's in_waiting says 1)
            self._fd: int | None = self._port.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
            self._port.timeout = POLL_S
        try:
            self.info = self._handshake(hello_wait_s)
        except BaseException:
            self._port.close()
            raise
        self.max_payload = min(MAX_PAYLOAD, self.info.max_payload)
        ceiling = self.timeout + (self.window - 1) * self._extra_per_request
        self.rtt = RttEstimator(initial=ceiling, floor=min(MIN_RTO_S, ceiling), ceiling=ceiling)

    # ------------------------------------------------------------------ public
    @property
    def window(self) -> int:
        """Requests kept in flight by `request_many`: one per channel the board caches."""
        return max(1, min(self.info.window, self.info.n_channels, MAX_WINDOW))

    def payload_budget(self, head: int) -> int:
        """Payload bytes a bulk frame (`head` bytes of fields + data) should carry now: the size that
        delivers the most data per cost (payload + FRAME_COST bytes per transmission) at the line's
        measured loss, at most `max_payload`."""
        loss = self.loss.per_byte
        if loss <= 0:
            return self.max_payload
        fixed = head + FRAME_COST  # (P - head) e^(-loss (P + cost)) / (P + cost) is largest at P = best
        best = (head - FRAME_COST + math.sqrt(fixed * fixed + 4 * fixed / loss)) / 2
        return max(head + 1, min(self.max_payload, int(best)))

    def request(self, mtype: Msg, payload: bytes = b"", timeout: float | None = None) -> Frame:
        """Send a reliable request and return its response; NakError if the board refuses it."""
        return self.request_many([(mtype, payload)], timeout)[0]

    def request_many(
        self, requests: Iterable[tuple[Msg, bytes]], timeout: float | None = None
    ) -> list[Frame]:
        """Send independent requests, `window` in flight (one per channel); their responses in order.

        `requests` is consumed lazily, one as a channel frees up (so a generator can size each one
        with `payload_budget`). The board may execute requests in flight together in any order: use
        it for offset-addressed writes and for reads, never for requests that depend on each other.
        `timeout` (e.g. for a RUN) replaces the link's retransmission timeout.
        """
        timeout = self._fixed_timeout if timeout is None else timeout
        return _Exchange(self, requests, self.window, timeout, self.retries).run()

    def ping(self, payload: bytes = b"") -> float:
        """Round-trip time of one PING in seconds (checks the echo)."""
        t0 = time.perf_counter()
        reply = self.request(Msg.PING, payload)
        rtt = time.perf_counter() - t0
        if reply.type != Msg.PONG or reply.payload != payload:
            raise LinkError(f"{self.url}: PING answered with {_name(reply.type)} and a different payload")
        return rtt

    def close(self) -> None:
        self._port.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _handshake(self, wait_s: float) -> HelloAck:
        self._write(b"\x00")
        deadline, before = time.monotonic() + wait_s, self._arrivals()
        while True:
            reply = self._hello()
            if reply is not None and reply.type == Msg.HELLO_ACK:
                try:
                    return HelloAck.unpack(reply.payload)
                except ProtocolError as exc:
                    raise LinkError(f"{self.url}: bad HELLO_ACK: {exc}") from None
            if self._decoder.foreign:
                raise LinkError(
                    f"{self.url}: unknown protocol version {version_text(self._decoder.foreign[-1].version)} "
                    f"(host speaks {version_text(VERSION)})"
                )
            if time.monotonic() > deadline:
                observed = self._arrivals().since(before)
                raise LinkError(f"{self.url}: no board answers HELLO within {wait_s:g} s: {observed}")

    def _hello(self) -> Frame | None:
        """One HELLO, answered within HELLO_INTERVAL_S or None."""
        try:
            hello = HELLO.pack(MAX_PAYLOAD) + bytes([HelloFlag.NAK_DROPPED])
            (reply,) = _Exchange(self, [(Msg.HELLO, hello)], 1, HELLO_INTERVAL_S, 0).run()
        except NoAnswerError:
            return None
        except NakError as exc:
            if exc.code == Nak.VERSION:
                raise LinkError(
                    f"{self.url}: unknown protocol version: the board refuses {version_text(VERSION)}"
                ) from None
            raise
        return reply

    def _pending(self, index: int, mtype: Msg, payload: bytes, channel: int) -> _Pending:
        """A new request on `channel`, with the next seq; not sent yet."""
        self._seqs[channel] = seq = (self._seqs[channel] + 1) & 0xFFFF
        self.stats.requests += 1
        wire = encode_frame(Frame(mtype, payload, channel=channel, seq=seq))
        return _Pending(index, mtype, channel, seq, wire, time.monotonic(), self._arrivals())

    def _arrivals(self) -> _Arrivals:
        return _Arrivals(dict(self._decoder.dropped), self._decoder.frames)

    def _send(self, requests: list[_Pending], timeout: float | None) -> None:
        """Transmit requests in one write; each gets its transmission order and deadline."""
        now = time.monotonic()
        for p in requests:
            self._order += 1
            p.sent_at, p.order = now, self._order
            if p.lost or not p.answer_order:
                p.answer_order, p.lost = p.order, False
            p.deadline = now + (self.rtt.backed_off(p.timeouts) if timeout is None else timeout)
            self.loss.sent(len(p.wire))
        self._write(b"".join(p.wire for p in requests))

    def _no_answer(self, p: _Pending) -> NoAnswerError:
        """The error for a request given up on, saying what arrived since it was first sent."""
        tries = _count(p.retransmits, "retransmission")
        return NoAnswerError(
            f"{self.url}: no response to {p.mtype.name} (channel {p.channel}, seq {p.seq}) after {tries} "
            f"in {time.monotonic() - p.first_sent:.2f} s: {self._arrivals().since(p.seen_before)}"
        )

    def _next(self, deadline: float) -> Frame | str | None:
        """The next frame or CORRUPT marker, in arrival order; None once `deadline` passes."""
        while not self._inbox:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return None
            data = self._read(min(POLL_S, wait))
            if data:
                self._feed(data)
        return self._inbox.popleft()

    def _feed(self, data: bytes) -> None:
        """Queue the frames completed by `data`, and a CORRUPT marker in the place of each damaged one."""
        self._inbox.extend(e if isinstance(e, Frame) else CORRUPT for e in self._decoder.events(data))
        self.stats.rx_dropped = dict(self._decoder.dropped)

    def _read(self, wait: float) -> bytes:
        try:
            if self._fd is None:
                data = self._port.read(max(1, min(self._port.in_waiting, 4096)))
            elif select.select([self._fd], [], [], wait)[0]:
                data = self._port.read(4096)
            else:
                data = b""
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.url}: board disconnected: {_reason(exc)}") from None
        self.stats.rx_bytes += len(data)
        return data

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.url}: board disconnected: {_reason(exc)}") from None
        self.stats.tx_bytes += len(data)


class _Exchange:
    """One `request_many`: a sliding window of independent requests, one in flight per channel.

    The board executes requests in arrival order and the line keeps the order, so an answer to a
    request sent later shows that every request sent before it and still unanswered was lost (or
    its answer was), and an answer that arrives corrupted most likely belonged to the oldest
    request in flight: those are retransmitted at once instead of at their timeouts.
    """

    def __init__(
        self,
        link: Link,
        requests: Iterable[tuple[Msg, bytes]],
        window: int,
        timeout: float | None,
        retries: int,
    ) -> None:
        self.link, self.source, self.timeout, self.retries = link, iter(requests), timeout, retries
        self.free = list(range(window))
        self.pending: dict[int, _Pending] = {}
        self.answers: dict[int, Frame] = {}
        self.sent = 0
        self.outgoing: list[_Pending] = []  # to transmit once every frame read so far is handled
        link._inbox = deque(item for item in link._inbox if item is not CORRUPT)  # about earlier requests

    def run(self) -> list[Frame]:
        while True:
            if not self.pending or not self.link._inbox:  # every frame read so far is handled
                self._flush()
            if not self.pending:
                return [self.answers[i] for i in range(self.sent)]
            item = self.link._next(min(p.deadline for p in self.pending.values()))
            if item is None:
                self._on_timeout()
            elif item is CORRUPT:
                self._on_corrupt()
            else:
                self._on_frame(item)

    def _flush(self) -> None:
        """Put the next requests on the free channels and transmit them with the retransmissions due,
        in one write."""
        for channel, (mtype, payload) in zip(
            list(self.free), _take(self.source, len(self.free)), strict=False
        ):
            self.free.remove(channel)
            self.pending[channel] = self.link._pending(self.sent, mtype, payload, channel)
            self.outgoing.append(self.pending[channel])
            self.sent += 1
        if self.outgoing:
            self.link._send(self.outgoing, self.timeout)
            self.outgoing = []

    def _on_frame(self, frame: Frame) -> None:
        link = self.link
        p = self.pending.get(frame.channel)
        if frame.is_response and frame.channel != BOARD_CHANNEL:
            link.loss.answered(MIN_FRAME + 2 + len(frame.payload))
        if frame.is_response and p is not None and frame.ref == p.seq:
            self._on_answer(p, frame)
        elif frame.type == Msg.LOG:
            link.logs.append(frame.payload.decode("utf-8", "replace"))
        elif frame.type == Msg.NAK and frame.ref == NO_REF and frame.payload[:1] == bytes([Nak.DROPPED]):
            self._on_corrupt()  # the board dropped a damaged frame: most likely the oldest request's
        elif frame.type == Msg.NAK and frame.ref == NO_REF:
            raise _nak(link, frame)  # unsolicited refusal (version)
        else:
            link.stats.stale_responses += 1

    def _on_answer(self, p: _Pending, frame: Frame) -> None:
        del self.pending[p.channel]
        self.free.append(p.channel)
        self.answers[p.index] = frame
        if self.timeout is None and p.retransmits == 0:  # Karn: a retransmitted one's answer is ambiguous
            self.link.rtt.sample(time.monotonic() - p.sent_at)
        if frame.type == Msg.NAK:
            raise _nak(self.link, frame)
        self._retransmit([q for q in self.pending.values() if q.order < p.answer_order], lost=True)

    def _on_timeout(self) -> None:
        now = time.monotonic()
        self._retransmit([p for p in self.pending.values() if p.deadline <= now], timed_out=True)

    def _on_corrupt(self) -> None:
        """An answer arrived damaged: most likely the one of the oldest request in flight."""
        waiting = [p for p in self.pending.values() if p not in self.outgoing]
        if waiting:
            self._retransmit([min(waiting, key=lambda p: p.order)])

    def _retransmit(self, requests: list[_Pending], lost: bool = False, timed_out: bool = False) -> None:
        """Queue requests for retransmission; `lost`: an answer to a later send showed that every
        send of theirs is lost (so only the new one can be answered)."""
        for p in sorted(requests, key=lambda p: p.order):
            if p in self.outgoing:
                continue
            if p.retransmits >= self.retries:
                raise self.link._no_answer(p)
            p.retransmits += 1
            p.timeouts += timed_out
            p.lost = lost
            self.link.stats.retransmits += 1
            self.link.stats.timeouts += timed_out
            self.outgoing.append(p)


def _no_delay(port: serial.SerialBase) -> None:
    """Send a `socket://` port's frames at once: Nagle's algorithm would hold a retransmission back
    until the lost request is acknowledged by TCP (up to 40 ms of delayed ACK)."""
    sock = getattr(port, "_socket", None)  # pyserial's socket:// handler
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _take(source: Iterator[tuple[Msg, bytes]], n: int) -> list[tuple[Msg, bytes]]:
    """Up to `n` next items of `source`."""
    return [item for _, item in zip(range(n), source, strict=False)]


def _nak(link: Link, frame: Frame) -> NakError:
    link.stats.naks += 1
    code = unpack_head(NAK_HEAD, frame.payload)[0][0]
    return NakError(link.url, code, nak_text(frame.payload))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _name(mtype: int) -> str:
    return Msg(mtype).name if mtype in Msg._value2member_map_ else f"type {mtype:#04x}"


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
