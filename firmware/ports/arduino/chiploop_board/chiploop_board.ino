// chiploop reference board for Arduino-compatible boards with a 32-bit CPU and a 64-bit double
// (RP2040 / Raspberry Pi Pico, SAMD21/51, Teensy, ESP32, STM32). Not for AVR (double is 32-bit).
//
// The protocol and the integer network are the portable C core in firmware/src; `make arduino`
// copies it into src/ next to this sketch, with the small limits of ../board_limits.h.
// See firmware/README.md, "Arduino / RP2040 port".

extern "C" {
#include "src/cl_board.h"
#include "src/cl_config.h"
}

// The serial shim: the core calls this for every response frame. USB-CDC boards ignore the baud rate.
extern "C" void cl_port_write(const uint8_t *data, size_t n)
{
    Serial.write(data, n);
}

void setup()
{
    Serial.begin(115200);
    cl_board_init(CL_BOARD_ID);
}

void loop()
{
    uint8_t buf[64];
    size_t n = 0;
    while (n < sizeof buf && Serial.available() > 0) {
        buf[n++] = (uint8_t)Serial.read();
    }
    if (n > 0) {
        cl_board_rx(buf, n);  // answers complete frames through cl_port_write before returning
    }
}
