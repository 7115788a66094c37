/* Cortex-M main: the board on UART0. Bytes arrive by interrupt into a ring; the main loop feeds
 * them to cl_board_rx and sleeps (WFI) when the ring is empty. Answers go out by polling. */
#include <stddef.h>
#include <stdint.h>

#include "cl_board.h"
#include "cl_config.h"
#include "cm_port.h"

#define REG(base, off) (*(volatile uint32_t *)((base) + (off)))

/* PL011 registers and bits */
#define UART_DR REG(CM_UART_BASE, 0x000)
#define UART_FR REG(CM_UART_BASE, 0x018)
#define UART_IBRD REG(CM_UART_BASE, 0x024)
#define UART_FBRD REG(CM_UART_BASE, 0x028)
#define UART_LCRH REG(CM_UART_BASE, 0x02C)
#define UART_CTL REG(CM_UART_BASE, 0x030)
#define UART_IFLS REG(CM_UART_BASE, 0x034)
#define UART_IM REG(CM_UART_BASE, 0x038)
#define UART_ICR REG(CM_UART_BASE, 0x044)
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)
#define INT_RX (1u << 4)
#define INT_RT (1u << 6)
#define INT_OE (1u << 10)
#define NVIC_ISER0 REG(0xE000E000u, 0x100)

typedef struct {
    uint8_t data[CM_RX_RING];
    volatile uint32_t head; /* written by the interrupt only */
    volatile uint32_t tail; /* written by the main loop only */
    volatile uint32_t overruns;
} cm_ring;

static cm_ring rx;

void cm_uart_isr(void)
{
    while (!(UART_FR & FR_RXFE)) {
        const uint8_t byte = (uint8_t)UART_DR;
        const uint32_t head = rx.head;
        if (head - rx.tail < CM_RX_RING) {
            rx.data[head & (CM_RX_RING - 1u)] = byte;
            rx.head = head + 1u;
        } else {
            rx.overruns++; /* the frame it belonged to fails its CRC: the host retransmits */
        }
    }
    UART_ICR = INT_RX | INT_RT | INT_OE;
}

void cl_port_write(const uint8_t *data, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++) {
        while (UART_FR & FR_TXFF) {
        }
        UART_DR = data[k];
    }
}

/* UART0 on PA0/PA1, 115200 8N1 from a 16 MHz clock, FIFOs on, interrupt on receive and timeout. */
static void uart_init(void)
{
    REG(CM_SYSCTL_BASE, 0x104) |= 1u; /* RCGC1: clock UART0 */
    REG(CM_SYSCTL_BASE, 0x108) |= 1u; /* RCGC2: clock GPIOA */
    REG(CM_GPIOA_BASE, 0x420) |= 3u;  /* AFSEL: PA0, PA1 to the UART */
    REG(CM_GPIOA_BASE, 0x51C) |= 3u;  /* DEN */
    UART_CTL = 0;
    UART_IBRD = 8;                    /* 16e6 / (16 * 115200) = 8.68 */
    UART_FBRD = 44;                   /* 0.68 * 64 */
    UART_LCRH = (3u << 5) | (1u << 4); /* 8 bits, FIFO enabled */
    UART_IFLS = 0;                    /* receive interrupt at 1/8 full, then the timeout */
    UART_ICR = 0x7FFu;
    UART_IM = INT_RX | INT_RT | INT_OE;
    UART_CTL = (1u << 0) | (1u << 8) | (1u << 9); /* UARTEN, TXE, RXE */
    NVIC_ISER0 = 1u << CM_UART_IRQ;
}

int main(void)
{
    uint8_t chunk[64];

    cl_board_init(CL_BOARD_ID);
    uart_init();
    for (;;) {
        uint32_t n = 0;
        __asm__ volatile("cpsid i" ::: "memory");
        if (rx.head == rx.tail) {
            __asm__ volatile("wfi" ::: "memory"); /* wakes on the pending interrupt, even masked */
        }
        __asm__ volatile("cpsie i" ::: "memory");
        while (rx.head != rx.tail && n < sizeof chunk) {
            chunk[n++] = rx.data[rx.tail & (CM_RX_RING - 1u)];
            rx.tail = rx.tail + 1u;
        }
        if (n) {
            cl_board_rx(chunk, n);
        }
    }
}
