"""A fault-injecting relay between a host and a board, for tests: bit flips, dropped, duplicated and
inserted bytes.

The relay opens the board at `upstream` (a device path or `socket://`) and offers the host a new
endpoint (`relay.url`): a pseudo-terminal or `socket://127.0.0.1:PORT`. Faults are drawn, each kind
independently with its rate, either per *frame unit* (the bytes up to and including a 0x00
delimiter: one random bit flipped, one random byte dropped, duplicated, or a random byte inserted)
or per *byte* (a noisy line: each byte may have a bit flipped, be dropped, be duplicated or be
preceded by a random byte). The delimiter itself can be hit. Each direction has its own generator
from `seed`, so a run is reproducible.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import serial

from chiploop.errors import LinkError
from chiploop.firmware_bridge.board_sim import open_pty

MAX_UNIT = 1024  # bytes held back waiting for a delimiter before relaying them as one unit


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault kind per frame unit (`per="unit"`) or per byte (`per="byte"`)."""

    bit_flip: float = 0.0
    drop: float = 0.0
    dup: float = 0.0
    insert: float = 0.0
    per: Literal["unit", "byte"] = "unit"

    @classmethod
    def line_noise(cls, rate: float) -> FaultRates:
        """A noisy line: bit flips, dropped bytes and inserted random bytes, each at `rate` per byte."""
        return cls(bit_flip=rate, drop=rate, insert=rate, per="byte")


@dataclass
class FaultCounts:
    units: int = 0
    bytes: int = 0
    bit_flips: int = 0
    drops: int = 0
    dups: int = 0
    inserts: int = 0


@dataclass
class FaultInjector:
    """Cuts one direction's byte stream into frame units and damages them."""

    rates: FaultRates
    rng: np.random.Generator
    counts: FaultCounts = field(default_factory=FaultCounts)
    pending: bytearray = field(default_factory=bytearray)

    def __call__(self, data: bytes) -> bytes:
        if self.rates.per == "byte":
            return self._damage_bytes(data)
        self.pending += data
        out = bytearray()
        while True:
            end = self.pending.find(0)
            if end < 0 and len(self.pending) < MAX_UNIT:
                return bytes(out)
            cut = end + 1 if end >= 0 else len(self.pending)
            out += self._damage(bytearray(self.pending[:cut]))
            del self.pending[:cut]

    def _damage(self, unit: bytearray) -> bytearray:
        self.counts.units += 1
        r = self.rates
        flip, drop, dup, insert = self.rng.random(4) < (r.bit_flip, r.drop, r.dup, r.insert)
        if flip:
            unit[self.rng.integers(len(unit))] ^= 1 << int(self.rng.integers(8))
            self.counts.bit_flips += 1
        if drop and unit:
            del unit[self.rng.integers(len(unit))]
            self.counts.drops += 1
        if dup and unit:
            i = int(self.rng.integers(len(unit)))
            unit[i:i] = unit[i : i + 1]
            self.counts.dups += 1
        if insert:
            i = int(self.rng.integers(len(unit) + 1))
            unit[i:i] = bytes([int(self.rng.integers(256))])
            self.counts.inserts += 1
        return unit

    def _damage_bytes(self, data: bytes) -> bytes:
        """Per-byte faults; six uniform draws per byte, so the damage does not depend on how the
        stream is cut into reads."""
        raw = np.frombuffer(data, np.uint8).copy()
        u = self.rng.random((raw.size, 6))
        r = self.rates
        flip, drop, dup, insert = (
            u[:, k] < rate for k, rate in enumerate((r.bit_flip, r.drop, r.dup, r.insert))
        )
        raw[flip] ^= np.left_shift(1, (u[flip, 4] * 8).astype(np.uint8)).astype(np.uint8)
        counts = (~drop) * (1 + dup)
        out = np.repeat(raw, counts)
        before = (np.cumsum(counts) - counts)[insert]  # each inserted byte goes before its byte
        out = np.insert(out, before, (u[insert, 5] * 256).astype(np.uint8))
        c = self.counts
        c.bytes += raw.size
        c.bit_flips, c.drops = c.bit_flips + int(flip.sum()), c.drops + int(drop.sum())
        c.dups, c.inserts = c.dups + int((dup & ~drop).sum()), c.inserts + int(insert.sum())
        return out.tobytes()


class Relay:
    """Relay between a host endpoint (`url`) and the board at `upstream`, injecting faults.

    Use as a context manager or call `close()`. `to_board` / `to_host` hold the fault counts.
    """

    def __init__(
        self,
        upstream: str,
        rates: FaultRates = FaultRates(),
        seed: int = 0,
        listen: Literal["tcp", "pty"] = "tcp",
    ) -> None:
        try:
            self._up = serial.serial_for_url(upstream, timeout=0)  # non-blocking; we select on fileno
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"{upstream}: relay cannot open the board: {exc}") from None
        down_rng, up_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        self._to_board = FaultInjector(rates, down_rng)
        self._to_host = FaultInjector(rates, up_rng)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        if listen == "pty":
            self._master, self._slave, self.url = open_pty()
            self._server = None
        else:
            self._server = socket.create_server(("127.0.0.1", 0))
            self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._threads = [
            threading.Thread(target=self._host_to_board, daemon=True),
            threading.Thread(target=self._board_to_host, daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def to_board(self) -> FaultCounts:
        return self._to_board.counts

    @property
    def to_host(self) -> FaultCounts:
        return self._to_host.counts

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self._up.close()
        if self._server is None:
            os.close(self._master)
            os.close(self._slave)
        else:
            self._server.close()
            if self._conn is not None:
                self._conn.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ pumps
    def _host_to_board(self) -> None:
        while not self._stop.is_set():
            data = self._host_read()
            damaged = self._to_board(data) if data else b""
            if damaged:
                try:
                    self._up.write(damaged)
                except (serial.SerialException, OSError):
                    return  # the board is gone; the host sees its requests time out

    def _board_to_host(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._up.fileno()], [], [], 0.01)
                data = self._up.read(4096) if ready else b""
            except (serial.SerialException, OSError, ValueError):
                return
            if data:
                damaged = self._to_host(data)
                if damaged:
                    self._host_write(damaged)

    def _host_read(self) -> bytes:
        if self._server is None:
            ready, _, _ = select.select([self._master], [], [], 0.01)
            return os.read(self._master, 4096) if ready else b""
        if self._conn is None:
            ready, _, _ = select.select([self._server], [], [], 0.01)
            if ready:
                conn, _ = self._server.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self._lock:
                    self._conn = conn
            return b""
        ready, _, _ = select.select([self._conn], [], [], 0.01)
        if not ready:
            return b""
        try:
            data = self._conn.recv(4096)
        except OSError:
            data = b""
        if not data:  # host went away: wait for the next one
            with self._lock:
                self._conn.close()
                self._conn = None
        return data

    def _host_write(self, data: bytes) -> None:
        if self._server is None:
            os.write(self._master, data)
            return
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.sendall(data)
                except OSError:
                    pass  # the reader notices the closed connection
