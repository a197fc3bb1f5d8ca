/* notify.c - telling the service manager how the pipeline is doing, with
 * sd_notify(3): READY=1 once every stage is up, STOPPING=1 when the
 * ordered shutdown begins, and a STATUS= line with each and after a
 * reload (so that `systemctl status` shows the stages running). Without
 * NOTIFY_SOCKET in the environment (not started by systemd with
 * Type=notify) every call does nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "supervisor/sup.h"

static void
notify(const char *state)
{
	int r = sd_notify(0, state);
	if (r < 0)
		log_warnx("sd_notify %.*s: %s", (int)strcspn(state, "\n"), state,
		    strerror(-r));
	else if (r > 0)
		log_debug("told the service manager: %s", state);
}

/* The pipeline's state after `head`: its stages, instance and transport. */
static void
notify_pipeline(const struct sup *s, const char *head)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s: %d stages (instance %s, transport %s)",
	    head, s->nstage, s->cfg.instance, chan_kind_name(s->cfg.chan.kind));
	notify(msg);
}

void
sup_notify_ready(const struct sup *s)
{
	notify_pipeline(s, "READY=1\nSTATUS=pipeline up");
}

void
sup_notify_stopping(const struct sup *s)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=stopping (instance %s)",
	    s->cfg.instance);
	notify(msg);
}

void
sup_notify_reloaded(const struct sup *s)
{
	notify_pipeline(s, "STATUS=pipeline reloaded");
}
