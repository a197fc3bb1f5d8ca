/* version.c - see version.h. */
#include "version.h"

#include <stdio.h>

#include "log.h"

#ifndef TELEM_VERSION
#define TELEM_VERSION "0.0.0+unknown"
#endif

const char telem_version[] = TELEM_VERSION;

int
version_print(void)
{
	if (printf("telem %s\n", telem_version) < 0 || fflush(stdout) == EOF) {
		log_warn("write version to stdout");
		return 1;
	}
	return 0;
}
