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

/* Hands `len` bytes to component `handle`'s next consumer: copies them before returning;
 * returns 0 and answers later, exactly once, with otapdf_complete(completion, ...). */
typedef int32_t (*otapdf_go_consume_fn)(uint64_t handle, uint32_t signal, const uint8_t *data,
                                        size_t len, uint64_t completion);
/* The outcome of what was submitted with `token` (exactly once), and whether its bytes are
 * released already (1) or will be through the release callback (0). */
typedef void (*otapdf_go_answer_fn)(uint64_t token, int32_t status, const uint8_t *message,
                                    size_t len, int32_t released);
/* The bytes lent with `token` are no longer referenced. */
typedef void (*otapdf_go_release_fn)(uint64_t token);

void otapdf_init(otapdf_go_consume_fn consume, otapdf_go_answer_fn answer,
                 otapdf_go_release_fn release);
char *otapdf_validate(uint32_t role, const uint8_t *config, size_t len);
char *otapdf_start(uint32_t role, const uint8_t *config, size_t len, uint64_t go_handle,
                   uint64_t *id);
char *otapdf_stop(uint64_t id);
/* 0: queued, the answer callback tells the outcome; else refused now (why in *message),
 * the bytes released, no callback. */
int32_t otapdf_submit(uint64_t id, uint32_t signal, const uint8_t *data, size_t len,
                      uint64_t token, char **message);
void otapdf_complete(uint64_t completion, int32_t status, const uint8_t *message, size_t len);
int32_t otapdf_authorize(uint64_t id, const uint8_t *value, size_t len, char **detail);
char *otapdf_server_header(uint64_t id);
int32_t otapdf_client_header(uint64_t id, char **name, char **value);
void otapdf_free(char *text);

#endif
