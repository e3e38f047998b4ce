/* Callgrind's client requests, for bench/versioning.py (loaded with ctypes).
 *
 * The benchmark runs under `valgrind --tool=callgrind --instr-atstart=no`:
 * Python starts and imports at near native speed, uninstrumented, and only
 * the requests between start() and stop() are counted, so the total is the
 * requests' own instructions, the same on every run.
 */
#include <valgrind/callgrind.h>

void lockgate_callgrind_start(void) {
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_ZERO_STATS;
}

void lockgate_callgrind_stop(void) {
    CALLGRIND_DUMP_STATS_AT("requests");
    CALLGRIND_STOP_INSTRUMENTATION;
}
