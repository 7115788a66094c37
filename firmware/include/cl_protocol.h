/* Numbers of docs/protocol.md: message types, NAK codes, capability bits, dtypes, ids. */
#ifndef CL_PROTOCOL_H
#define CL_PROTOCOL_H

#define CL_FW_MAJOR 0
#define CL_FW_MINOR 3
#define CL_BOARD_CHANNEL 0xFF

enum cl_msg {
    CL_HELLO = 0x01, CL_HELLO_ACK = 0x02, CL_PING = 0x03, CL_PONG = 0x04, CL_ACK = 0x05,
    CL_NAK = 0x06, CL_RESET = 0x07, CL_LOG = 0x08,
    CL_CONFIG_NET = 0x10, CL_WRITE_PARAM = 0x11, CL_WRITE_WEIGHTS = 0x12, CL_READ_WEIGHTS = 0x13,
    CL_WEIGHTS = 0x14, CL_COMMIT = 0x15, CL_CONFIG_RULES = 0x16, CL_CONFIG_LAYERS = 0x17,
    CL_INPUT = 0x20, CL_RUN = 0x21, CL_DONE = 0x22, CL_READ_OUTPUT = 0x23, CL_OUTPUT = 0x24,
    CL_READ_COUNTERS = 0x25, CL_COUNTERS = 0x26
};

enum cl_nak {
    CL_NAK_VERSION = 1, CL_NAK_UNKNOWN_TYPE = 2, CL_NAK_BAD_LEN = 3, CL_NAK_OUT_OF_RANGE = 4,
    CL_NAK_NOT_CONFIGURED = 5, CL_NAK_BUSY = 6, CL_NAK_CRC_MISMATCH = 7, CL_NAK_CAPABILITY = 8,
    CL_NAK_DROPPED = 9
};

/* Host flags appended to the HELLO payload */
enum cl_hello_flag { CL_HELLO_NAK_DROPPED = 1 };

enum cl_cap {
    CL_CAP_FIXED = 1u << 0, CL_CAP_FLOAT = 1u << 1, CL_CAP_RECURRENT = 1u << 2,
    CL_CAP_SPIKING_READOUT = 1u << 3, CL_CAP_ALIF = 1u << 4, CL_CAP_MEMBRANE = 1u << 5,
    CL_CAP_DECAY_SHIFT = 1u << 6, CL_CAP_DECAY_MULTIPLIER = 1u << 7, CL_CAP_W_I8 = 1u << 8,
    CL_CAP_W_I16 = 1u << 9, CL_CAP_W_I32 = 1u << 10, CL_CAP_W_F32 = 1u << 11,
    CL_CAP_PERSIST = 1u << 12, CL_CAP_GAIN = 1u << 13, CL_CAP_SPIKE_CAP = 1u << 14, CL_CAP_RULES = 1u << 16,
    CL_CAP_DROP_NAK = 1u << 17, CL_CAP_LAYERS = 1u << 18
};

/* CONFIG_NET flags */
enum cl_config_flag { CL_CFG_RECURRENT = 1, CL_CFG_SPIKING_READOUT = 2, CL_CFG_RESET_ZERO = 4, CL_CFG_FLOAT = 8 };

enum cl_dtype { CL_I8 = 1, CL_I16 = 2, CL_I32 = 3, CL_F32 = 4, CL_F64 = 5 };

enum cl_vector {
    CL_V_HID_D_MEM = 0, CL_V_HID_D_SYN = 1, CL_V_HID_D_ADA = 2, CL_V_HID_THRESHOLD = 3,
    CL_V_HID_BETA = 4, CL_V_HID_GAIN = 5, CL_V_OUT_D_MEM = 6, CL_V_OUT_D_SYN = 7,
    CL_V_OUT_THRESHOLD = 8, CL_V_HID_D_SYN2 = 9, CL_V_HID_BIAS = 10, CL_V_OUT_BIAS = 11, CL_N_VECTORS = 12
};

/* Matrix ids; with several hidden layers (CONFIG_LAYERS) id 5 + 2(k - 1) holds the weights from layer
 * k - 1 into layer k and 6 + 2(k - 1) layer k's recurrence (k >= 1), and HIDDEN_OUT leaves the last. */
enum cl_matrix {
    CL_M_IN_HIDDEN = 0, CL_M_HIDDEN_HIDDEN = 1, CL_M_HIDDEN_OUT = 2, CL_M_IN_HIDDEN_2 = 3, CL_M_HIDDEN_HIDDEN_2 = 4,
    CL_M_LAYERS = 5
};

enum cl_buffer {
    CL_B_HIDDEN_SPIKES = 0, CL_B_OUT_SPIKES = 1, CL_B_HIDDEN_V = 2, CL_B_OUT_V = 3, CL_B_HIDDEN_COUNTS = 4,
    CL_N_BUFFERS = 5
};

/* COUNTERS payload order (§4.7) */
enum cl_counter {
    CL_C_RX_FRAMES, CL_C_RX_COBS_ERRORS, CL_C_RX_CRC_ERRORS, CL_C_RX_LEN_ERRORS,
    CL_C_RX_VERSION_ERRORS, CL_C_DUPLICATES, CL_C_NAKS_SENT, CL_C_TICKS, CL_C_SPIKES,
    CL_C_DROPPED_SPIKES, CL_C_COMMITS, CL_C_RESETS, CL_N_COUNTERS
};

#endif
