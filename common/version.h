/* version.h - the one version of every telem program. The Makefile sets it
 * (TELEM_VERSION, from its VERSION) when it compiles common/version.c. */
#ifndef TELEM_VERSION_H
#define TELEM_VERSION_H

extern const char telem_version[];

/* Print "telem VERSION" and a newline on stdout; returns 0, or 1 if stdout
 * could not be written (logged). For -V/--version. */
int version_print(void);

#endif
