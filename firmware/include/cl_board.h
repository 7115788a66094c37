/* A chiploop board: feed it received bytes, it answers through cl_port_write (docs/protocol.md).
 *
 * Single-threaded and allocation-free: all state lives in static buffers sized by cl_config.h.
 * A port (host pty, Arduino Serial...) implements cl_port_write and calls cl_board_rx.
 */
#ifndef CL_BOARD_H
#define CL_BOARD_H

#include <stddef.h>
#include <stdint.h>

/* Implemented by the port: send n bytes to the host (may block until they are queued). */
void cl_port_write(const uint8_t *data, size_t n);

/* Power-on: unconfigured, no weights, counters zero. */
void cl_board_init(uint32_t board_id);

/* Process received bytes; complete frames are answered before this returns. */
void cl_board_rx(const uint8_t *data, size_t n);

#endif
