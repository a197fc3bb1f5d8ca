/* wake.c - bin/bench-wake: what this machine charges a process for the
 * wake-ups every stage of telem pays, with no telem code in the way. A
 * stage naps between gathers (common/stage.c) and a writer's send wakes
 * its reader; at 3.2M events/s the five stages do that some 1 600 times a
 * second on shm and 4 000 on mqueue (README, Performance). Each row is the
 * CPU time the processes involved were charged (CLOCK_PROCESS_CPUTIME_ID,
 * and getrusage for a child), per event:
 *  - nap: a nanosleep of 1 ms (and of 3 ms) and the wake-up after it, with
 *    the CPU idle in between;
 *  - nap, CPU busy: the same with a spinning process of the lowest priority
 *    on the same CPU, so that the CPU never idles: what the timer alone costs;
 *  - round trip: one byte to a child process and back over two pipes, both
 *    on one CPU, then on two, where each wake-up crosses CPUs.
 * On bare metal each is a few microseconds. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/cputime.h"
#include "bench/usage.h"

#define NAPS 2000
#define TRIPS 20000

static _Noreturn void
die(const char *what)
{
	fprintf(stderr, "bench-wake: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) == -1)
		die("sched_setaffinity");
}

/* CPU microseconds per nap of `us`. */
static double
naps(long us, int n)
{
	struct timespec ts = { us / 1000000, us % 1000000 * 1000 };
	double t0 = cpu_s();
	for (int i = 0; i < n; i++)
		if (nanosleep(&ts, NULL) == -1 && errno != EINTR)
			die("nanosleep");
	return (cpu_s() - t0) * 1e6 / n;
}

static double
child_cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_CHILDREN, &ru) == -1)
		die("getrusage");
	return rusage_s(&ru);
}

static pid_t
spawn_spinner(int cpu)
{
	pid_t pid = fork();
	if (pid == -1)
		die("fork");
	if (pid == 0) {
		pin(cpu);
		errno = 0;
		if (nice(19) == -1 && errno != 0)
			die("nice");
		for (volatile unsigned long x = 0;; x++)
			;
	}
	return pid;
}

/* CPU microseconds of both processes per round trip, the child on cpu_b. */
static double
round_trips(int cpu_a, int cpu_b, int n)
{
	int ab[2], ba[2];
	if (pipe(ab) == -1 || pipe(ba) == -1)
		die("pipe");
	double c0 = child_cpu_s();
	pid_t pid = fork();
	if (pid == -1)
		die("fork");
	char c = 'w';
	if (pid == 0) {
		pin(cpu_b);
		for (int i = 0; i < n; i++)
			if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
				_exit(1);
		_exit(0);
	}
	pin(cpu_a);
	double t0 = cpu_s();
	for (int i = 0; i < n; i++)
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			die("pipe round trip");
	double mine = cpu_s() - t0;
	int status;
	if (waitpid(pid, &status, 0) == -1)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bench-wake: the round trips' child failed\n");
		exit(1);
	}
	close(ab[0]), close(ab[1]), close(ba[0]), close(ba[1]);
	return (mine + child_cpu_s() - c0) * 1e6 / n;
}

int
main(int argc, char **argv)
{
	bench_usage(argc, argv, "(no arguments: prints what this machine "
	    "charges for a nap and a wake-up)");
	cpu_set_t all;
	if (sched_getaffinity(0, sizeof(all), &all) == -1)
		die("sched_getaffinity");
	int cpus[2], ncpu = 0;
	for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
		if (CPU_ISSET(c, &all))
			cpus[ncpu++] = c;

	printf("%-34s %12s\n", "event", "CPU us each");
	printf("%-34s %12.1f\n", "nap 1 ms, CPU idle", naps(1000, NAPS));
	printf("%-34s %12.1f\n", "nap 3 ms, CPU idle", naps(3000, NAPS / 3));
	pid_t spin = spawn_spinner(cpus[0]);
	pin(cpus[0]);
	double busy1 = naps(1000, NAPS), busy3 = naps(3000, NAPS / 3);
	if (kill(spin, SIGKILL) == -1 || waitpid(spin, NULL, 0) == -1)
		die("stop the spinner");
	printf("%-34s %12.1f\n", "nap 1 ms, CPU busy", busy1);
	printf("%-34s %12.1f\n", "nap 3 ms, CPU busy", busy3);
	printf("%-34s %12.1f\n", "pipe round trip, one CPU",
	    round_trips(cpus[0], cpus[0], TRIPS));
	if (ncpu > 1)
		printf("%-34s %12.1f\n", "pipe round trip, two CPUs",
		    round_trips(cpus[0], cpus[1], TRIPS));
	else
		printf("%-34s %12s\n", "pipe round trip, two CPUs", "(one CPU)");
	if (sched_setaffinity(0, sizeof(all), &all) == -1)
		die("sched_setaffinity");
	return 0;
}
