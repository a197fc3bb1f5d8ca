/* usage.h - `-h` and the argument of the bench programs that take none
 * or one count. Header-only, like cputime.h. */
#ifndef TELEM_BENCH_USAGE_H
#define TELEM_BENCH_USAGE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print "usage: PROG ARGS" and what the program measures, and exit:
 * to standard output with 0 for -h, to standard error with 2 else. */
static inline void
bench_usage_exit(const char *prog, const char *args, const char *what,
    int help)
{
	fprintf(help ? stdout : stderr, "usage: %s%s%s\n%s\n", prog,
	    *args ? " " : "", args, what);
	exit(help ? 0 : 2);
}

/* For a program without arguments: returns if there are none. */
static inline void
bench_usage(int argc, char **argv, const char *what)
{
	if (argc > 1)
		bench_usage_exit(argv[0], "", what,
		    argc == 2 && strcmp(argv[1], "-h") == 0);
}

/* For a program with one optional count, described by args: the count,
 * or def without one; -h, more arguments, or anything but a whole number
 * of at least min print the usage and exit. */
static inline long
bench_count(int argc, char **argv, long def, long min, const char *args,
    const char *what)
{
	if (argc < 2)
		return def;
	char *end;
	errno = 0;
	long n = strtol(argv[1], &end, 10);
	if (argc > 2 || end == argv[1] || *end != '\0' || errno != 0 || n < min)
		bench_usage_exit(argv[0], args, what,
		    argc == 2 && strcmp(argv[1], "-h") == 0);
	return n;
}

#endif
