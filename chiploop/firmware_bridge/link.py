"""Link: a reliable request/response channel to a board over any pyserial URL (docs/protocol.md §2, §5).

Stop-and-wait per channel: a request waits for the response whose `ref` is its `seq`, the identical
bytes are retransmitted on timeout and the board suppresses duplicates; `request_many` keeps one
independent request in flight on each of the board's channels. Every failure is a LinkError that
names the port and the reason.
"""

from __future__ import annotations

import select
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import serial

from chiploop.errors import LinkError
from chiploop.firmware_bridge.protocol import (
    HELLO,
    MAX_PAYLOAD,
    NAK_HEAD,
    NO_REF,
    VERSION,
    Frame,
    FrameDecoder,
    HelloAck,
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


class NakError(LinkError):
    """The board refused a request; `code` is the Nak code."""

    def __init__(self, port: str, code: int, text: str) -> None:
        self.code, self.text = code, text
        super().__init__(f"{port}: board refused: {text}")


@dataclass
class LinkStats:
    """Host-side counters of one Link."""

    requests: int = 0
    retransmits: int = 0
    rehellos: int = 0
    naks: int = 0
    tx_bytes: int = 0
    rx_bytes: int = 0
    stale_responses: int = 0
    rx_dropped: dict[str, int] = field(default_factory=dict)


class Link:
    """A handshaken connection to a board at `url` (device path, `socket://host:port`, ...).

    timeout: seconds to wait for the responses before retransmitting; default
    `2 × (10 × 256 / baud) + 0.05`, plus `2 × (10 × 256 / baud)` per further request in flight
    (an explicit timeout is used as given, for links without a baud rate: pty, tcp).
    retries: retransmissions before giving up.
    hello_wait_s: how long to keep sending HELLO while the board boots.
    """

    def __init__(
        self,
        url: str,
        baud: int = 115200,
        timeout: float | None = None,
        retries: int = 4,
        hello_wait_s: float = 5.0,
    ) -> None:
        self.url = url
        frame_time = 2 * 10 * 256 / baud  # one full frame out and one back, 10 bits a byte
        self.timeout = timeout if timeout is not None else frame_time + 0.05
        self._extra_per_request = frame_time if timeout is None else 0.0
        self.retries = retries
        self.stats = LinkStats()
        self.logs: deque[str] = deque(maxlen=64)
        self._decoder = FrameDecoder()
        self._inbox: deque[Frame] = deque()
        self._seqs = [0] * MAX_WINDOW
        try:
            self._port = serial.serial_for_url(url, baudrate=baud, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"{url}: cannot open port: {_reason(exc)}") from None
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

    # ------------------------------------------------------------------ public
    @property
    def window(self) -> int:
        """Requests kept in flight by `request_many`: one per channel the board caches."""
        return max(1, min(self.info.window, self.info.n_channels, MAX_WINDOW))

    def request(self, mtype: Msg, payload: bytes = b"", timeout: float | None = None) -> Frame:
        """Send a reliable request and return its response; NakError if the board refuses it."""
        return self.request_many([(mtype, payload)], timeout)[0]

    def request_many(
        self, requests: Sequence[tuple[Msg, bytes]], timeout: float | None = None
    ) -> list[Frame]:
        """Send independent requests, `window` at a time (one per channel); their responses in order.

        The board may execute requests of one window in any order: use it for offset-addressed
        writes and for reads, never for requests that depend on each other.
        """
        timeout = self.timeout if timeout is None else timeout
        out: list[Frame] = []
        for start in range(0, len(requests), self.window):
            group = requests[start : start + self.window]
            answers = self._exchange(group, timeout, self.retries)
            for (mtype, _), frame in zip(group, answers, strict=True):
                if frame is None:
                    alive = self._rehello()
                    state = "answers HELLO again (was it reset?)" if alive else "does not answer HELLO either"
                    tries = self.retries + 1
                    raise LinkError(
                        f"{self.url}: no response to {mtype.name} after {tries} tries; the board {state}"
                    )
            for frame in answers:
                if frame.type == Msg.NAK:
                    self.stats.naks += 1
                    code = unpack_head(NAK_HEAD, frame.payload)[0][0]
                    raise NakError(self.url, code, nak_text(frame.payload))
            out += answers
        return out

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
        deadline = time.monotonic() + wait_s
        while True:
            (reply,) = self._exchange([(Msg.HELLO, HELLO.pack(MAX_PAYLOAD))], HELLO_INTERVAL_S, 0)
            foreign = self._decoder.foreign
            if reply is not None and reply.type == Msg.NAK and reply.payload[:1] == bytes([Nak.VERSION]):
                raise LinkError(
                    f"{self.url}: unknown protocol version: the board refuses {version_text(VERSION)}"
                )
            if reply is not None and reply.type == Msg.HELLO_ACK:
                try:
                    return HelloAck.unpack(reply.payload)
                except ProtocolError as exc:
                    raise LinkError(f"{self.url}: bad HELLO_ACK: {exc}") from None
            if foreign:
                raise LinkError(
                    f"{self.url}: unknown protocol version {version_text(foreign[-1].version)} "
                    f"(host speaks {version_text(VERSION)})"
                )
            if time.monotonic() > deadline:
                raise LinkError(f"{self.url}: no board answers HELLO within {wait_s:g} s")

    def _rehello(self) -> bool:
        self.stats.rehellos += 1
        try:
            self.info = self._handshake(min(1.0, 4 * self.timeout))
        except LinkError:
            return False
        return True

    def _exchange(
        self, group: Sequence[tuple[Msg, bytes]], timeout: float, retries: int
    ) -> list[Frame | None]:
        """Send requests on channels 0.. (retransmitting unanswered ones); responses, None if none came."""
        wires = []
        for channel, (mtype, payload) in enumerate(group):
            self._seqs[channel] = (self._seqs[channel] + 1) & 0xFFFF
            wires.append(encode_frame(Frame(mtype, payload, channel=channel, seq=self._seqs[channel])))
        self.stats.requests += len(group)
        answers: list[Frame | None] = [None] * len(group)
        for attempt in range(retries + 1):
            missing = [ch for ch, answer in enumerate(answers) if answer is None]
            if attempt:
                self.stats.retransmits += len(missing)
            self._write(b"".join(wires[ch] for ch in missing))
            deadline = time.monotonic() + timeout + (len(missing) - 1) * self._extra_per_request
            while None in answers and (frame := self._next_frame(deadline)) is not None:
                ch = frame.channel
                awaited = ch < len(group) and answers[ch] is None and frame.ref == self._seqs[ch]
                if frame.is_response and awaited:
                    answers[ch] = frame
                elif frame.type == Msg.LOG:
                    self.logs.append(frame.payload.decode("utf-8", "replace"))
                elif frame.type == Msg.NAK and frame.ref == NO_REF:
                    return [frame] * len(group)  # unsolicited refusal (version)
                else:
                    self.stats.stale_responses += 1
            if None not in answers:
                break
        return answers

    def _next_frame(self, deadline: float) -> Frame | None:
        while not self._inbox:
            if time.monotonic() > deadline:
                return None
            data = self._read()
            if data:
                self._inbox.extend(self._decoder.feed(data))
        return self._inbox.popleft()

    def _read(self) -> bytes:
        try:
            if self._fd is None:
                data = self._port.read(max(1, min(self._port.in_waiting, 4096)))
            elif select.select([self._fd], [], [], POLL_S)[0]:
                data = self._port.read(4096)
            else:
                data = b""
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.url}: board disconnected: {_reason(exc)}") from None
        self.stats.rx_bytes += len(data)
        self.stats.rx_dropped = dict(self._decoder.dropped)
        return data

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"{self.url}: board disconnected: {_reason(exc)}") from None
        self.stats.tx_bytes += len(data)


def _name(mtype: int) -> str:
    return Msg(mtype).name if mtype in Msg._value2member_map_ else f"type {mtype:#04x}"


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
