/* The Cortex-M port: one UART (receive by interrupt into a ring buffer, polled transmit), no OS.
 *
 * The UART is the Stellaris / PL011 one of the LM3S6965 (QEMU machine lm3s6965evb): UART0 at
 * 0x4000C000, IRQ 5, on PA0/PA1. Another PL011-based MCU needs only these addresses changed.
 */
#ifndef CM_PORT_H
#define CM_PORT_H

#include <stdint.h>

#define CM_N_IRQ 48               /* device interrupts in the vector table */
#define CM_UART_IRQ 5             /* UART0 */
#define CM_UART_BASE 0x4000C000u  /* UART0 */
#define CM_SYSCTL_BASE 0x400FE000u
#define CM_GPIOA_BASE 0x40004000u
#define CM_STACK_PAINT 0x5AC3A55Au /* free RAM holds this until the stack reaches it */
#ifndef CM_RX_RING
#define CM_RX_RING 1024u /* receive ring, a power of two: four full frames */
#endif

/* The UART interrupt: moves every received byte into the ring (dropped, and counted, when full). */
void cm_uart_isr(void);

#endif
