"""The reference firmware built for a Cortex-M3 (`make -C firmware cortex-m`) and run by QEMU on its
lm3s6965evb model (64 KB SRAM), the UART on a pty: the same board as the host build, within an MCU's
memory. Skipped without qemu-system-arm and arm-none-eabi-gcc, except the missing-tool messages.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import serial
from test_c_firmware import (
    TWIN_CASES,
    chip_scenario,
    counters,
    damaged_frames,
    firmware_ask,
    ok,
    raw_exchange,
    read_back,
    same_recording,
    upload,
)
from typer.testing import CliRunner

from chiploop.chip.network import NetworkSpec
from chiploop.cli import app
from chiploop.emulator.twin_chip import TwinChip
from chiploop.errors import ChipError
from chiploop.firmware_bridge.link import Link, NakError
from chiploop.firmware_bridge.protocol import RUN, ConfigNet, DType, Frame, Matrix, Msg, Nak, encode_frame
from chiploop.firmware_bridge.relay import FaultRates, Relay
from chiploop.firmware_bridge.serial_chip import SerialChip

MAKEFILE = Path(__file__).resolve().parents[2] / "firmware" / "Makefile"


def cortex_m_limits() -> dict[str, int]:
    """The -D maxima of the Cortex-M build, as the Makefile sets them."""
    text = MAKEFILE.read_text().split("CM_LIMITS =", 1)[1].split("CM_CFLAGS", 1)[0]
    return {k: int(v) for k, v in re.findall(r"-D(CL_\w+)=(\d+)", text)}


# ---------------------------------------------------------------- missing tools


def board_qemu(tmp_path: Path, tools: tuple[str, ...], *args: str) -> subprocess.CompletedProcess:
    """`chiploop board qemu` with only `tools` (empty scripts) on PATH."""
    for tool in tools:
        (tmp_path / tool).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / tool).chmod(0o755)
    env = os.environ | {"PATH": str(tmp_path)}
    cmd = [sys.executable, "-m", "chiploop", "board", "qemu", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("tools", "says"),
    [
        ((), "qemu-system-arm not found: install it with `apt-get install qemu-system-arm`"),
        (("qemu-system-arm", "make"), "arm-none-eabi-gcc not found: install it with `apt-get install "
                                      "gcc-arm-none-eabi libnewlib-arm-none-eabi`"),
    ],
)  # fmt: skip
def test_board_qemu_without_its_tools_says_what_to_install(
    tmp_path: Path, tools: tuple[str, ...], says: str
) -> None:
    done = board_qemu(tmp_path, tools)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: {says} (Debian/Ubuntu)"]


def test_board_qemu_names_the_machines_it_has_a_port_for(tmp_path: Path) -> None:
    done = board_qemu(tmp_path, ("qemu-system-arm",), "--machine", "mps2-an500")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: board qemu: no firmware port for machine 'mps2-an500'; supported: lm3s6965evb"
    ]


# ---------------------------------------------------------------- the board on QEMU


def test_board_qemu_prints_its_port_and_stops_on_ctrl_c(qemu_image: Path, from_a_terminal: dict) -> None:
    cmd = [sys.executable, "-m", "chiploop", "board", "qemu", "--image", str(qemu_image)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **from_a_terminal)
    try:
        port = proc.stdout.readline().strip()
        assert re.fullmatch(r"/dev/pts/\d+", port), port
        with Link(port) as link:
            assert link.info.max_synapses == cortex_m_limits()["CL_MAX_SYNAPSES"]
            link.ping(b"qemu")
        (qemu,) = children(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not Path(f"/proc/{qemu}").exists(), "QEMU still runs after Ctrl-C"


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_qemu_board_reports_its_mcu_limits(qemu_path: str) -> None:
    limits = cortex_m_limits()
    result = CliRunner().invoke(app, ["board", "info", qemu_path], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    with Link(qemu_path) as link:
        info = link.info
    assert (info.max_inputs, info.max_neurons, info.max_synapses, info.max_ticks, info.buffer_bytes) == (
        limits["CL_MAX_INPUTS"], limits["CL_MAX_NEURONS"], limits["CL_MAX_SYNAPSES"],
        limits["CL_MAX_TICKS"], limits["CL_OUTPUT_BYTES"],
    )  # fmt: skip
    assert (info.n_channels, info.window) == (1, 1)
    assert re.search(rf"max_synapses\s*│\s*{limits['CL_MAX_SYNAPSES']}\b", result.output), result.output


def test_garbage_truncated_frames_and_oversized_networks_leave_it_answering(qemu_path: str) -> None:
    limits = cortex_m_limits()
    rng = np.random.default_rng(15)
    garbage = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    truncated = encode_frame(Frame(Msg.PING, b"cut short", seq=5))[:-6]  # no delimiter: merges with the next
    with serial.serial_for_url(qemu_path, timeout=0.02) as port:
        raw_exchange(port, garbage + b"\0" + damaged_frames() + truncated, wait_s=1.0)
        (pong,) = raw_exchange(port, b"\0" + encode_frame(Frame(Msg.PING, b"alive", seq=6)), wait_s=1.0)
        assert (pong.type, pong.payload) == (Msg.PONG, b"alive")
    with Link(qemu_path) as link:
        ask = firmware_ask(link)
        n_in = limits["CL_MAX_SYNAPSES"] // 64 - 10  # n_in -> 64 -> 10 holds exactly the maximum
        for cfg, why in (
            (ConfigNet(n_in, 64, 10, 0, 0, 16, 8, 0, 0, 0), ""),
            (ConfigNet(n_in + 1, 64, 10, 0, 0, 16, 8, 0, 0, 0), "weights exceed max_synapses"),
            (ConfigNet(limits["CL_MAX_INPUTS"] + 1, 1, 1, 0, 0, 16, 8, 0, 0, 0), "n_in exceeds max_inputs"),
            (ConfigNet(1, limits["CL_MAX_NEURONS"], 1, 0, 0, 16, 8, 0, 0, 0), r"n_hidden \+ n_out exceeds"),
            (ConfigNet(1000, 1000, 1000, 0, 0, 16, 8, 0, 0, 0), "n_in exceeds max_inputs"),
        ):
            if not why:  # the largest that fits is taken
                ok(ask, Msg.CONFIG_NET, cfg.pack())
                continue
            with pytest.raises(NakError, match=why) as refused:
                link.request(Msg.CONFIG_NET, cfg.pack())
            assert refused.value.code == Nak.CAPABILITY
        ok(ask, Msg.CONFIG_NET, ConfigNet(4, 3, 2, 0, 0, 16, 8, 0, 0, 0).pack())
        assert ask(Msg.RUN, RUN.pack(limits["CL_MAX_TICKS"] + 1, 0)) == (Msg.NAK, bytes([Nak.OUT_OF_RANGE]))
        c = counters(ask)
        link.ping(b"still here")
    assert c["rx_crc_errors"] + c["rx_cobs_errors"] + c["rx_len_errors"] >= 6
    assert c["naks_sent"] >= 5


def test_serial_chip_refuses_a_network_the_qemu_board_cannot_hold(qemu_path: str) -> None:
    profile, _ = TWIN_CASES["lif-multiplier"]
    with pytest.raises(ChipError, match=r"cannot host this network: \d+ synapses, board max \d+"):
        SerialChip(qemu_path, profile, NetworkSpec(128, 60, 10))  # 70 neurons fit, 8280 weights do not


@pytest.mark.parametrize("case", sorted(TWIN_CASES))
def test_serial_chip_on_the_qemu_board_matches_torch_twin(qemu_path: str, case: str) -> None:
    profile, spec = TWIN_CASES[case]
    weights, inputs = chip_scenario(spec)
    twin = TwinChip(profile, spec, seed=3)
    chip = SerialChip(qemu_path, profile, spec, seed=3)
    try:
        for c in (twin, chip):
            c.write_weights(weights)
        same_recording(chip.run(inputs[:2]), twin.run(inputs[:2]))
    finally:
        chip.close()


def test_largest_upload_through_the_fault_relay_arrives_exact(qemu_path: str) -> None:
    """Every weight the board holds (64 KB SRAM is far below 100,000 int32 weights), through 1 % of
    frames flipped, dropped and duplicated in each direction, read back exact."""
    limits = cortex_m_limits()
    n_in, n_out = limits["CL_MAX_SYNAPSES"] // 64 - 10, 10
    assert n_in * 64 + 64 * n_out == limits["CL_MAX_SYNAPSES"]  # n_in -> 64 -> 10 holds exactly the maximum
    rng = np.random.default_rng(16)
    weights = {
        Matrix.IN_HIDDEN: rng.integers(-(2**31), 2**31 - 1, (n_in, 64)),
        Matrix.HIDDEN_OUT: rng.integers(-(2**31), 2**31 - 1, (64, n_out)),
    }
    rates = FaultRates(bit_flip=0.01, drop=0.01, dup=0.01)
    with Relay(qemu_path, rates, seed=16, listen="pty") as relay, Link(relay.url, timeout=0.2) as link:
        ask = firmware_ask(link)
        ok(ask, Msg.CONFIG_NET, ConfigNet(n_in, 64, n_out, 0, 0, 24, 12, 0, 0, 0).pack())
        upload(ask, weights, generation=1)
        got = {m: read_back(ask, m, w.size, DType.I32) for m, w in weights.items()}
        c = counters(ask)
    for m, w in weights.items():
        assert np.array_equal(got[m], w.ravel()), m.name
    faults = relay.to_board.bit_flips + relay.to_board.drops + relay.to_board.dups
    assert faults > 0 and link.stats.retransmits > 0
    assert c["commits"] == 1 and c["duplicates"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["loihi2", "xylo"])
def test_in_the_loop_training_through_the_qemu_board_matches_the_emulator(
    qemu_path: str, tmp_path: Path, profile: str
) -> None:
    """One epoch in the loop on the emulated MCU gives the emulator's metrics.csv byte for byte. A
    small task: QEMU's UART model takes one byte per main-loop turn (see BENCHMARKS.md)."""
    from chiploop.training.loop import Trainer

    def train(target: str) -> str:
        trainer = Trainer(profile, target=target, task="integration", n_hidden=16, seed=3, batch_size=32,
                          task_options={"n_train": 128, "n_test": 64},
                          out_dir=tmp_path / target.split(":")[0], progress=False, plots=False)  # fmt: skip
        try:
            trainer.fit(1)
        finally:
            trainer.chip.close()
        return (trainer.run.path / "metrics.csv").read_text()

    on_board = train(f"serial://{qemu_path}")
    assert on_board == train("emulator")
    header, before, after = (line.split(",") for line in on_board.splitlines()[:3])
    runs, loss = header.index("chip_runs"), header.index("train_loss")
    assert after[runs] == "4" and after[loss] != before[loss]  # four chip runs changed the loss
