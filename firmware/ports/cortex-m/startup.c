/* Cortex-M start-up: vector table, .data copy, .bss clear, stack paint, then main. */
#include <stdint.h>

#include "cm_port.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

int main(void);

void cl_reset_handler(void)
{
    const uint32_t *src = &_sidata;
    uint32_t *dst;
    volatile uint32_t *paint;
    const uintptr_t frame = (uintptr_t)__builtin_frame_address(0);

    for (dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    /* Paint the free RAM below this frame, so the stack's high-water mark can be read later. */
    for (paint = (volatile uint32_t *)&_ebss; (uintptr_t)paint + 64u < frame; paint++) {
        *paint = CM_STACK_PAINT;
    }
    main();
    for (;;) {
    }
}

static void cl_fault_handler(void)
{
    for (;;) {
    }
}

/* Initial stack pointer, then the 15 system exceptions, then the device interrupts (IRQ 0..). */
typedef union {
    void (*handler)(void);
    const void *stack_top;
} cm_vector;

__attribute__((section(".vectors"), used)) static const cm_vector vectors[16 + CM_N_IRQ] = {
    {.stack_top = &_estack},
    {cl_reset_handler},
    {cl_fault_handler}, /* NMI */
    {cl_fault_handler}, /* HardFault */
    {cl_fault_handler}, /* MemManage */
    {cl_fault_handler}, /* BusFault */
    {cl_fault_handler}, /* UsageFault */
    [11] = {cl_fault_handler}, /* SVCall */
    [14] = {cl_fault_handler}, /* PendSV */
    [15] = {cl_fault_handler}, /* SysTick */
    [16 + CM_UART_IRQ] = {cm_uart_isr},
};
