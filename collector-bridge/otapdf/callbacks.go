package otapdf

// The callbacks the Rust side calls (their C declarations are in bridge.go, which may define
// C functions: a file with //export may not).

/*
#include "../include/otapdf_bridge.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"unsafe"

	"go.opentelemetry.io/collector/consumer/consumererror"
)

//export otapdfGoAnswer
func otapdfGoAnswer(token C.uint64_t, status C.int32_t, message *C.uint8_t, size C.size_t, released C.int32_t) {
	handle := cgo.Handle(token)
	call, ok := handle.Value().(*submitted)
	if !ok {
		return
	}
	why := ""
	if message != nil && size > 0 {
		why = string(unsafe.Slice((*byte)(unsafe.Pointer(message)), int(size)))
	}
	if released != 0 {
		call.pinner.Unpin()
		handle.Delete()
	}
	call.outcome <- outcomeError(int(status), why)
}

//export otapdfGoRelease
func otapdfGoRelease(token C.uint64_t) {
	handle := cgo.Handle(token)
	if call, ok := handle.Value().(*submitted); ok {
		call.pinner.Unpin()
	}
	handle.Delete()
}

// outlet is what a component's outlet hands payloads to.
type outlet interface {
	// deliver decodes (copying) the request and hands it to the next consumer on a
	// goroutine of its own, calling done with the outcome.
	deliver(signal int, request []byte, done func(error)) error
}

//export otapdfGoConsume
func otapdfGoConsume(handle C.uint64_t, signal C.uint32_t, data *C.uint8_t, size C.size_t, completion C.uint64_t) (status C.int32_t) {
	// A panic here would cross into Rust: answered as an error instead.
	defer func() {
		if recovered := recover(); recovered != nil {
			complete(completion, fmt.Errorf("the Collector side panicked: %v", recovered))
			status = statusAccepted
		}
	}()
	target, ok := cgo.Handle(handle).Value().(outlet)
	if !ok {
		complete(completion, consumererror.NewPermanent(errors.New("no Collector component behind this handle")))
		return statusAccepted
	}
	request := unsafe.Slice((*byte)(unsafe.Pointer(data)), int(size))
	if err := target.deliver(int(signal), request, func(err error) { complete(completion, err) }); err != nil {
		complete(completion, err)
	}
	return statusAccepted
}
