/* test_spawn.c - sup_kill's signals (supervisor/spawn.c): a stage that is
 * stopped gets a SIGCONT before its SIGTERM; one that is not stopped gets
 * none. (A SIGCONT reaching a sanitized stage that is already exiting hung
 * it: see sup_kill.) The stage here is a child that writes, on a pipe, one
 * letter per signal it took: C for SIGCONT, T for SIGTERM. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/sup.h"

static int pfd[2];
static volatile sig_atomic_t got_term;

static void
on_cont(int sig)
{
	(void)sig;
	(void)!write(pfd[1], "C", 1);
}

static void
on_term(int sig)
{
	(void)sig;
	(void)!write(pfd[1], "T", 1);
	got_term = 1;
}

/* The child: both signals blocked except while it waits, so none is lost
 * between its checks; once it has its SIGTERM, both are let through, so
 * that a SIGCONT still pending runs its handler too, then "E" and out. */
static _Noreturn void
child(void)
{
	struct sigaction sa;
	sigset_t both, none;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_cont;
	if (sigaction(SIGCONT, &sa, NULL) == -1)
		_exit(2);
	sa.sa_handler = on_term;
	if (sigaction(SIGTERM, &sa, NULL) == -1)
		_exit(2);
	sigemptyset(&none);
	sigemptyset(&both);
	sigaddset(&both, SIGCONT);
	sigaddset(&both, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &both, NULL) == -1 || setpgid(0, 0) == -1)
		_exit(2);
	(void)!write(pfd[1], "R", 1);
	while (!got_term)
		sigsuspend(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	(void)!write(pfd[1], "E", 1);
	_exit(0);
}

/* A child in a process group of its own, as a stage is, once it is
 * ready (its "R" read). */
static pid_t
start(void)
{
	char b;
	got_term = 0;
	cr_assert_eq(pipe(pfd), 0);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		close(pfd[0]);
		child();
	}
	close(pfd[1]);
	cr_assert(setpgid(pid, pid) == 0 || errno == EACCES);
	cr_assert_eq(read(pfd[0], &b, 1), 1);
	cr_assert_eq(b, 'R');
	return pid;
}

/* sup_kill(SIGTERM) on the child; what it wrote after "R", till EOF. */
static void
term_and_collect(pid_t pid, char *got, size_t cap)
{
	static struct sup_child c;
	memset(&c, 0, sizeof(c));
	snprintf(c.name, sizeof(c.name), "child");
	c.pid = pid;
	sup_kill(&c, SIGTERM);
	size_t n = 0;
	ssize_t r;
	while (n < cap - 1 && (r = read(pfd[0], got + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	got[n] = '\0';
	close(pfd[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

Test(spawn, a_running_stage_gets_sigterm_and_no_sigcont)
{
	pid_t pid = start();
	int state = sup_proc_state(pid);
	cr_assert(state == 'S' || state == 'R', "state %d", state);
	char got[16];
	term_and_collect(pid, got, sizeof(got));
	cr_assert_str_eq(got, "TE");
}

Test(spawn, a_stopped_stage_gets_sigcont_and_sigterm)
{
	pid_t pid = start();
	int st;
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	cr_assert_eq(waitpid(pid, &st, WUNTRACED), pid);
	cr_assert(WIFSTOPPED(st));
	cr_assert_eq(sup_proc_state(pid), 'T');
	char got[16];
	term_and_collect(pid, got, sizeof(got));
	/* Both handlers ran, in the order the kernel delivers them. */
	cr_assert(strcmp(got, "CTE") == 0 || strcmp(got, "TCE") == 0, "%s", got);
}

Test(spawn, a_process_gone_has_no_state)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		_exit(0);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	cr_assert_eq(sup_proc_state(pid), 0);
	cr_assert_eq(sup_proc_state(getpid()), 'R');
}
