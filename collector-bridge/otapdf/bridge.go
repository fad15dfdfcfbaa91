// Package otapdf registers otap-df extensions and pipeline fragments as OpenTelemetry
// Collector components (type `otapdf` in every section). Each component runs an otap-df
// engine of its own, in the Collector's process, through the C ABI of the Rust crate
// otap-df-collector-bridge (linked as the static library libotap_df_collector_bridge.a:
// build it with `cargo rustc -p otap-df-collector-bridge --lib --crate-type staticlib` and
// point CGO_LDFLAGS at its folder with -L).
package otapdf

/*
#cgo LDFLAGS: -lotap_df_collector_bridge -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
#include <stdlib.h>
#include "../include/otapdf_bridge.h"

extern int32_t otapdfGoConsume(uint64_t handle, uint32_t signal, uint8_t *data, size_t len,
                               uint64_t completion);
extern void otapdfGoRelease(uint64_t token);

static void otapdf_go_init(void) {
	otapdf_init((otapdf_go_consume_fn)otapdfGoConsume, (otapdf_go_release_fn)otapdfGoRelease);
}
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"

	"go.opentelemetry.io/collector/consumer/consumererror"
)

// Roles, as the C ABI numbers them.
const (
	roleExtension = 0
	roleReceiver  = 1
	roleProcessor = 2
	roleExporter  = 3
	roleConnector = 4
)

// Signals, as the C ABI numbers them.
const (
	signalLogs    = 0
	signalTraces  = 1
	signalMetrics = 2
)

// Outcomes, as the C ABI numbers them.
const (
	statusAccepted  = 0
	statusRetryable = 1
	statusPermanent = 2
)

func init() {
	C.otapdf_go_init()
}

// takeString returns a string the library handed out and frees it.
func takeString(text *C.char) (string, bool) {
	if text == nil {
		return "", false
	}
	defer C.otapdf_free(text)
	return C.GoString(text), true
}

func configJSON(config any) ([]byte, error) {
	text, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("the configuration cannot be handed to otap-df: %w", err)
	}
	return text, nil
}

func bytesPointer(text []byte) (*C.uint8_t, C.size_t) {
	if len(text) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&text[0])), C.size_t(len(text))
}

// validate checks a component's configuration with otap-df, starting nothing.
func validate(role int, config any) error {
	text, err := configJSON(config)
	if err != nil {
		return err
	}
	data, size := bytesPointer(text)
	if message, failed := takeString(C.otapdf_validate(C.uint32_t(role), data, size)); failed {
		return errors.New(message)
	}
	return nil
}

// start starts a component's engine; handle is what its outlet names to otapdfGoConsume.
func start(role int, config any, handle cgo.Handle) (uint64, error) {
	text, err := configJSON(config)
	if err != nil {
		return 0, err
	}
	data, size := bytesPointer(text)
	var id C.uint64_t
	if message, failed := takeString(C.otapdf_start(C.uint32_t(role), data, size, C.uint64_t(handle), &id)); failed {
		return 0, errors.New(message)
	}
	return uint64(id), nil
}

// stop stops a component's engine and waits for its threads.
func stop(id uint64) error {
	if message, failed := takeString(C.otapdf_stop(C.uint64_t(id))); failed {
		return errors.New(message)
	}
	return nil
}

// consume hands a component an OTLP export request and waits for its outcome. The bytes
// are lent, not copied: pinned until otap-df no longer references them, which may be after
// this returns (an exporter still merging them), when the release callback unpins them.
func consume(id uint64, signal int, request []byte) error {
	if len(request) == 0 {
		return nil
	}
	pinner := new(runtime.Pinner)
	pinner.Pin(&request[0])
	token := cgo.NewHandle(pinner)
	data, size := bytesPointer(request)
	var released C.int32_t
	var message *C.char
	status := C.otapdf_consume(C.uint64_t(id), C.uint32_t(signal), data, size, C.uint64_t(token), &released, &message)
	if released != 0 {
		pinner.Unpin()
		token.Delete()
	}
	why, _ := takeString(message)
	switch status {
	case statusAccepted:
		return nil
	case statusPermanent:
		return consumererror.NewPermanent(errors.New(why))
	default:
		// Retryable: the Collector's retry and queueing take over.
		return errors.New(why)
	}
}

// complete answers a payload otapdfGoConsume took.
func complete(completion C.uint64_t, err error) {
	status, why := statusAccepted, ""
	if err != nil {
		why = err.Error()
		status = statusRetryable
		if consumererror.IsPermanent(err) {
			status = statusPermanent
		}
	}
	data, size := bytesPointer([]byte(why))
	C.otapdf_complete(completion, C.int32_t(status), data, size)
}
