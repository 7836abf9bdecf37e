/* remote.h: the backend that asks an OpenAI-compatible server over HTTP:
 * the worker thread's CURL handle, timeouts and retries. The request and
 * reply formats are openai.c's. */
#ifndef REMOTE_H
#define REMOTE_H

#include "backend.h"

extern const struct model_backend	 remote_backend;

#endif
