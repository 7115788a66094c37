"""`chiploop board`: serve a simulated board or the firmware under QEMU, ping a board, show its limits."""

from __future__ import annotations

import signal
import statistics
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chiploop.errors import LinkError

app = typer.Typer(help="Talk to a board (or serve a simulated one).", no_args_is_help=True)


@app.command()
def serve(
    pty: bool = typer.Option(False, "--pty", help="Serve on a new pseudo-terminal; prints its path."),
    tcp: str = typer.Option("", "--tcp", help="Serve on HOST:PORT (pyserial URL socket://HOST:PORT)."),
    profile: str = typer.Option("", "--profile", help="Take the neuron limit from this chip profile."),
    max_neurons: int = typer.Option(0, "--max-neurons", help="Neuron limit to announce (0: default 4096)."),
    state: Annotated[
        Path | None, typer.Option("--state", help="File keeping committed weights across restarts.")
    ] = None,
) -> None:
    """Run the board simulator until killed (the neuron of docs/dynamics.md, fixed or float)."""
    from chiploop.firmware_bridge.board_sim import Board, BoardLimits, serve_pty, serve_tcp

    if pty == bool(tcp):
        raise LinkError("board serve: give exactly one of --pty or --tcp HOST:PORT")
    limit = min(max_neurons or _profile_neurons(profile) or BoardLimits.max_neurons, 0xFFFF)  # u16 field
    board = Board(BoardLimits(max_neurons=limit), state_file=state)
    host, _, port = tcp.rpartition(":")
    if tcp and (not host or not port.isdigit()):
        raise LinkError(f"board serve: --tcp expects HOST:PORT, got {tcp!r}")
    try:
        if pty:
            serve_pty(board)
        else:
            serve_tcp(board, host, int(port))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except OSError as exc:
        raise LinkError(f"board serve: {exc}") from None


def _profile_neurons(name: str) -> int | None:
    if not name:
        return None
    from chiploop.chip_profiles.loader import load_profile

    return load_profile(name).limits.max_neurons


@app.command()
def ping(
    url: str = typer.Argument(..., help="Port: /dev/ttyACM0, /dev/pts/N, socket://HOST:PORT."),
    n: int = typer.Option(20, "-n", min=1, help="Number of pings."),
    size: int = typer.Option(0, "--size", min=0, max=240, help="Payload bytes per ping."),
) -> None:
    """Round-trip times of PING: min / median / max."""
    from chiploop.firmware_bridge.link import Link

    with Link(url) as link:
        rtts = [link.ping(bytes(range(size))) * 1e3 for _ in range(n)]
    typer.echo(
        f"{url}: {n} pings of {size} bytes: min {min(rtts):.3f} ms, "
        f"median {statistics.median(rtts):.3f} ms, max {max(rtts):.3f} ms"
    )


@app.command()
def info(url: str = typer.Argument(..., help="Port: /dev/ttyACM0, /dev/pts/N, socket://HOST:PORT.")) -> None:
    """The board's HELLO_ACK: versions, limits and capabilities."""
    from chiploop.firmware_bridge.link import Link
    from chiploop.firmware_bridge.protocol import Cap

    with Link(url) as link:
        hello = link.info
    table = Table(title=f"board on {url}")
    table.add_column("field")
    table.add_column("value")
    for name, value in vars(hello).items():
        if not name.startswith("reserved") and name != "capabilities":
            table.add_row(name, str(value))
    table.add_row("capabilities", ", ".join(c.name for c in Cap if hello.capabilities & c))
    Console().print(table)


@app.command()
def qemu(
    machine: str = typer.Option("lm3s6965evb", "--machine", help="QEMU board model (lm3s6965evb)."),
    image: Annotated[
        Path | None, typer.Option("--image", help="A built image (default: make -C firmware cortex-m).")
    ] = None,
) -> None:
    """Run the reference firmware on an emulated microcontroller; prints its UART's pty until Ctrl-C."""
    from chiploop.firmware_bridge.qemu import QemuBoard

    board = QemuBoard(machine, image=image)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops QEMU too (it runs in its own process group)
    try:
        typer.echo(board.url)
        typer.echo(f"QEMU {machine} serves the board on {board.url}; Ctrl-C stops it", err=True)
        code = board.wait()
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    finally:
        board.close()
    if code != 0:
        raise LinkError(f"board qemu: QEMU exited with code {code}: {' '.join(board.output)[-200:]}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
