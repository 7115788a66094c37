/* Host port: serve the board on a pseudo-terminal (default) or on stdin/stdout.
 *
 *   chiploop_board [--stdio] [--board-id N]
 *
 * pty mode prints the slave device path (e.g. /dev/pts/7) on stdout, then serves until killed;
 * it keeps the slave open itself, so hosts may open and close the port any number of times.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cl_board.h"
#include "cl_config.h"

static int out_fd = -1;

void cl_port_write(const uint8_t *data, size_t n)
{
    while (n > 0) {
        const ssize_t k = write(out_fd, data, n);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            perror("chiploop_board: write");
            exit(1);
        }
        data += k;
        n -= (size_t)k;
    }
}

/* Raw 8-bit mode: no echo, no line discipline, no CR/LF translation. */
static int make_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) != 0) {
        return -1;
    }
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    return tcsetattr(fd, TCSANOW, &t);
}

/* A raw pty; returns the master fd and keeps the slave open (its path goes to *path). */
static int open_pty(const char **path)
{
    const int master = posix_openpt(O_RDWR | O_NOCTTY);
    int slave;

    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || (*path = ptsname(master)) == NULL) {
        perror("chiploop_board: pty");
        exit(1);
    }
    slave = open(*path, O_RDWR | O_NOCTTY);
    if (slave < 0 || make_raw(slave) != 0) {
        perror("chiploop_board: pty slave");
        exit(1);
    }
    return master;
}

static void serve(int in_fd)
{
    uint8_t buf[512];
    for (;;) {
        const ssize_t n = read(in_fd, buf, sizeof buf);
        if (n > 0) {
            cl_board_rx(buf, (size_t)n);
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EIO)) {
            return; /* EOF or a real error; EIO: no host has the pty open right now */
        } else if (errno == EIO) {
            usleep(10000);
        }
    }
}

int main(int argc, char **argv)
{
    unsigned long board_id = CL_BOARD_ID;
    int stdio_mode = 0, k;

    for (k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--stdio") == 0) {
            stdio_mode = 1;
        } else if (strcmp(argv[k], "--board-id") == 0 && k + 1 < argc) {
            board_id = strtoul(argv[++k], NULL, 0);
        } else {
            fprintf(stderr, "usage: %s [--stdio] [--board-id N]\n", argv[0]);
            return 2;
        }
    }
    cl_board_init((uint32_t)board_id);
    if (stdio_mode) {
        out_fd = STDOUT_FILENO;
        serve(STDIN_FILENO);
    } else {
        const char *path = NULL;
        out_fd = open_pty(&path);
        printf("%s\n", path);
        fflush(stdout);
        serve(out_fd);
    }
    return 0;
}
