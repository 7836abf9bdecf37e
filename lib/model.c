/* model.c: the choice of the model backend (model.h, backend.h). */
#include <stddef.h>

#include "backend.h"
#include "config.h"
#include "log.h"
#include "model.h"
#include "offline.h"
#include "remote.h"

/* Chosen once by model_init(), before the worker threads start, and
 * only read afterwards. */
static const struct model_backend	*backend = &offline_backend;

int
model_init(const struct config *cfg)
{
	backend = cfg->model_url != NULL ? &remote_backend : &offline_backend;
	if (backend->init != NULL && backend->init(cfg) == -1) {
		log_err("model: the %s backend did not start", backend->name);
		return -1;
	}
	return 0;
}

void
model_thread_cleanup(void)
{
	if (backend->thread_cleanup != NULL)
		backend->thread_cleanup();
}

void
model_cleanup(void)
{
	model_thread_cleanup();
	if (backend->cleanup != NULL)
		backend->cleanup();
}

int
model_complete(const struct transcript *t, int offer_tools,
    const struct model_stream *stream, struct model_reply *out,
    struct chat_err *err)
{
	reply_init(out);
	if (backend->complete(t, offer_tools, stream, out, err) == -1) {
		reply_free(out);
		return -1;
	}
	return 0;
}
