/* Compile-time maxima for a microcontroller with ~256 KB of RAM (RP2040): about 175 KB of buffers.
 * `make arduino` puts these in front of cl_config.h in the sketch's src/. Sized for 100 inputs,
 * 128 hidden and 10 output neurons; announced to the host in HELLO_ACK. */
#define CL_MAX_INPUTS 128
#define CL_MAX_NEURONS 160
#define CL_MAX_SYNAPSES 16384 /* x2: active and shadow weights, int32 each */
#define CL_MAX_TICKS 100
#define CL_OUTPUT_BYTES 32768UL
#define CL_N_CHANNELS 1
