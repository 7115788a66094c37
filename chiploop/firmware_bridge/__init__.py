"""The host side of the board bridge: wire protocol, reliable link, SerialChip, board simulator, relay,
the firmware under QEMU (qemu.py)."""

from chiploop.firmware_bridge.link import Link, NakError
from chiploop.firmware_bridge.protocol import Frame, FrameDecoder, ProtocolError, decode_frame, encode_frame
from chiploop.firmware_bridge.serial_chip import SerialChip

__all__ = [
    "Frame",
    "FrameDecoder",
    "Link",
    "NakError",
    "ProtocolError",
    "SerialChip",
    "decode_frame",
    "encode_frame",
]
