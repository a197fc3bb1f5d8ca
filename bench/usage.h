/* usage.h - `-h` for the bench programs that take at most a few plain
 * arguments (a count, or none). Header-only, like cputime.h. */
#ifndef TELEM_BENCH_USAGE_H
#define TELEM_BENCH_USAGE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* With -h, print "usage: PROG ARGS" and what the program measures to
 * standard output and exit 0; with more than nargs arguments, or an
 * option, print the same to standard error and exit 2; else return. */
static inline void
bench_usage(int argc, char **argv, int nargs, const char *args,
    const char *what)
{
	if (argc - 1 <= nargs && (argc < 2 || argv[1][0] != '-'))
		return;
	int help = argc == 2 && strcmp(argv[1], "-h") == 0;
	fprintf(help ? stdout : stderr, "usage: %s%s%s\n%s\n", argv[0],
	    *args ? " " : "", args, what);
	exit(help ? 0 : 2);
}

#endif
