/* The C ABI of otap-df's Collector bridge (crate otap-df-collector-bridge, src/ffi.rs).
 *
 * Roles: 0 extension, 1 receiver, 2 processor, 3 exporter, 4 connector.
 * Signals: 0 logs, 1 traces, 2 metrics. Payloads: OTLP export requests, protobuf.
 * Status: 0 accepted, 1 retryable, 2 permanent.
 * Every string the library returns is freed with otapdf_free. A Rust panic never crosses:
 * it is reported as an error. */
#ifndef OTAPDF_BRIDGE_H
#define OTAPDF_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

/* What the library tells the caller, taken in batches (otapdf_events):
 * kind 0, a delivery: `len` bytes at `data` of `signal` for the next consumer of component
 *   `id` (the handle given to otapdf_start); answer with otapdf_complete(completion, ...).
 *   Who sent it, when known: `identity_len` bytes of JSON at `identity` (as otapdf_authorize
 *   gives it).
 * kind 1, an answer: the outcome `status` (why in `len` bytes at `data`) of what was
 *   submitted with token `id`; `released` 1 when its bytes are released already.
 * kind 2, a release: the bytes submitted with token `id` are no longer referenced.
 * kind 3, an ending: the engine of component `id` (its handle) ended by itself, not
 *   stopped: a node failed (why in `len` bytes at `data`); what it is given is refused. */
typedef struct {
    uint32_t kind;
    uint32_t signal;
    uint64_t id;
    uint64_t completion;
    const uint8_t *data;
    size_t len;
    int32_t status;
    int32_t released;
    const uint8_t *identity;
    size_t identity_len;
} otapdf_event;

/* The socket to wait on: a byte arrives when events are queued (unless a caller said it
 * looks: otapdf_wake, otapdf_complete). Given once; then -1. */
int32_t otapdf_events_fd(void);
/* Every queued event, valid until otapdf_events_done(the returned batch). */
uint64_t otapdf_events(const otapdf_event **events, size_t *count);
void otapdf_events_done(uint64_t batch);

char *otapdf_validate(uint32_t role, const uint8_t *config, size_t len);
char *otapdf_start(uint32_t role, const uint8_t *config, size_t len, uint64_t go_handle,
                   uint64_t *id);
char *otapdf_stop(uint64_t id);
/* The component's engine metrics as JSON ({"nodes": [...], "extensions": [...]}), or null
 * when no such component runs. Freed with otapdf_free. */
char *otapdf_metrics(uint64_t id);
/* 0: queued, an answer event tells the outcome, and *wake is 0 or a wake-up the caller owes
 * the component's engine (asleep when it came: give it with otapdf_wake, after letting its
 * other callers queue theirs); else refused now (why in *message), the bytes released, no
 * event names the token. */
/* `records`: what the request holds, or UINT64_MAX to have it counted and checked. */
int32_t otapdf_submit(uint64_t id, uint32_t signal, const uint8_t *data, size_t len,
                      uint64_t records, uint64_t token, uint64_t *wake, char **message);
/* otapdf_submit with who sent it: `identity_len` bytes of JSON at `identity`
 * ({"subject": "...", "attributes": [["k", "v"]]}); the payload carries that identity. */
int32_t otapdf_submit_as(uint64_t id, uint32_t signal, const uint8_t *data, size_t len,
                         uint64_t records, uint64_t token, const uint8_t *identity,
                         size_t identity_len, uint64_t *wake, char **message);
/* Gives a wake-up otapdf_submit said was owed (a ticket, not 0), once. `look` not 0: the
 * caller has the event pump take after this call (events queued until then write no
 * wake-up byte to the socket). */
void otapdf_wake(uint64_t ticket, int32_t look);
/* Answers a delivery; what it settles is settled on the calling thread. `look` as for
 * otapdf_wake. */
void otapdf_complete(uint64_t completion, int32_t status, const uint8_t *message, size_t len,
                     int32_t look);
/* 0: accepted, *detail the identity as JSON ({"subject": "...", "attributes": [["k", "v"]]});
 * 1: refused, 2: no decision (refuse); *detail why. */
int32_t otapdf_authorize(uint64_t id, const uint8_t *value, size_t len, char **detail);
char *otapdf_server_header(uint64_t id);
int32_t otapdf_client_header(uint64_t id, char **name, char **value);
void otapdf_free(char *text);

#endif
