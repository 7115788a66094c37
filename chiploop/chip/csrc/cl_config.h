/* Compile-time maxima of the chiploop reference firmware.
 *
 * Every buffer is static and sized from these; override any of them with -D on the compiler
 * command line (e.g. -DCL_MAX_SYNAPSES=4096 for a small microcontroller; see README.md).
 */
#ifndef CL_CONFIG_H
#define CL_CONFIG_H

#ifndef CL_MAX_INPUTS
#define CL_MAX_INPUTS 512 /* input channels (n_in) */
#endif
#ifndef CL_MAX_NEURONS
#define CL_MAX_NEURONS 512 /* hidden + output neurons */
#endif
#ifndef CL_MAX_LAYERS
#define CL_MAX_LAYERS 4 /* hidden layers */
#endif
#ifndef CL_MAX_SYNAPSES
#define CL_MAX_SYNAPSES 131072 /* weights of all matrices together (active and shadow copies) */
#endif
#ifndef CL_MAX_TICKS
#define CL_MAX_TICKS 1024 /* ticks of one RUN (input buffer depth) */
#endif
#ifndef CL_OUTPUT_BYTES
#define CL_OUTPUT_BYTES 1048576UL /* output buffers of one RUN; announced as buffer_bytes */
#endif
#ifndef CL_MAX_PAYLOAD
#define CL_MAX_PAYLOAD 240 /* payload bytes of one frame, <= 240 */
#endif
#ifndef CL_N_CHANNELS
#define CL_N_CHANNELS 4 /* channels with a response cache */
#endif
#ifndef CL_BOARD_ID
#define CL_BOARD_ID 0xC1100001UL /* default board identity in HELLO_ACK */
#endif

#endif
