/* Internal: the board's state and the request handlers shared by board.c and commands.c. */
#ifndef CL_BOARD_STATE_H
#define CL_BOARD_STATE_H

#include <stdint.h>

#include "cl_config.h"
#include "cl_frame.h"
#include "cl_net.h"
#include "cl_protocol.h"

#define CL_IN_BYTES_MAX ((CL_MAX_INPUTS + 7) / 8)
#define CL_INPUT_BYTES ((uint32_t)CL_MAX_TICKS * CL_IN_BYTES_MAX)

/* The answer a handler builds: a response type and payload, or a NAK code with a detail text. */
typedef struct {
    uint8_t type;
    uint8_t nak; /* enum cl_nak, 0 = success */
    const char *detail;
    uint16_t len;
    uint8_t payload[CL_MAX_PAYLOAD];
} cl_reply;

typedef struct {
    uint32_t board_id;
    uint32_t counters[CL_N_COUNTERS];
    int configured;
    cl_net_cfg cfg;
    cl_net_params params;
    cl_net_state state;
    uint32_t tick;           /* ticks since the last state reset */
    uint16_t generation;     /* of the active weights, 0 = none committed */
    uint16_t shadow_gen;     /* generation being uploaded into the shadow, 0 = no shadow */
    volatile uint8_t active; /* which weights[] copy is active: flipping it is the atomic swap */
    int32_t weights[2][CL_MAX_SYNAPSES];
    uint8_t input[CL_INPUT_BYTES];
    uint8_t output[CL_OUTPUT_BYTES];
    uint32_t out_size[CL_N_BUFFERS]; /* bytes in each output buffer after the last RUN (0 = empty) */
    uint32_t out_at[CL_N_BUFFERS];   /* where each output buffer starts in output[] */
} cl_board_t;

extern cl_board_t cl_board;

/* Refuse the request: the reply becomes NAK(code, request type, detail). */
void cl_refuse(cl_reply *rep, uint8_t code, const char *detail);

/* Handlers of the network commands (commands.c); each fills rep. */
void cl_cmd_config(const cl_frame *req, cl_reply *rep);
void cl_cmd_config_rules(const cl_frame *req, cl_reply *rep);
void cl_cmd_config_layers(const cl_frame *req, cl_reply *rep);
void cl_cmd_write_param(const cl_frame *req, cl_reply *rep);
void cl_cmd_write_weights(const cl_frame *req, cl_reply *rep);
void cl_cmd_read_weights(const cl_frame *req, cl_reply *rep);
void cl_cmd_commit(const cl_frame *req, cl_reply *rep);
void cl_cmd_input(const cl_frame *req, cl_reply *rep);
void cl_cmd_run(const cl_frame *req, cl_reply *rep);
void cl_cmd_read_output(const cl_frame *req, cl_reply *rep);

/* Forget the configuration (RESET full): unconfigured, no weights, no shadow. */
void cl_unconfigure(void);

#endif
