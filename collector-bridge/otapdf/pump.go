package otapdf

// The pump: what the Rust side tells the Go side arrives as events, queued there and taken
// here in batches by one goroutine. It takes when kicked: by a goroutine that waits on the
// event socket through Go's own poller (a byte arrives when events are queued), or by a
// goroutine that just gave the engine a wake-up or answered a delivery and told the Rust
// side so (`look`: the events that causes need no byte on the socket). No Rust thread ever
// runs Go code, so none waits for one of the Go scheduler's processors.

/*
#include "../include/otapdf_bridge.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"go.opentelemetry.io/collector/consumer/consumererror"
)

const (
	eventDeliver = 0
	eventAnswer  = 1
	eventRelease = 2
	eventEnded   = 3
)

// outlet is what a component's outlet hands payloads to.
type outlet interface {
	// deliver decodes (copying) the request, or recognises one lent to otap-df, and hands
	// it to the next consumer on a goroutine of its own, calling done with the outcome;
	// `sender`: who sent it (JSON, as otapdf_authorize gives it), when otap-df knows.
	deliver(signal int, request []byte, sender []byte, done func(error)) error
	// ended says the component's engine ended by itself (a node failed).
	ended(why string)
}

// outlets are the running components, by the handle their engine names in deliveries. A
// delivery for a component gone meanwhile is refused, not a crash.
var (
	outlets    sync.Map
	nextOutlet atomic.Uint64
)

func registerOutlet(target outlet) uint64 {
	handle := nextOutlet.Add(1)
	outlets.Store(handle, target)
	return handle
}

func forgetOutlet(handle uint64) {
	outlets.Delete(handle)
}

func startPump() {
	fd := int(C.otapdf_events_fd())
	if fd < 0 {
		log.Printf("otapdf: the bridge's event socket is taken: no component can answer")
		return
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		log.Printf("otapdf: the bridge's event socket: %v", err)
	}
	go wakeups(os.NewFile(uintptr(fd), "otapdf-events"))
	go pump()
}

// pumpKicked has the pump take the queued events (one kick is enough for any number).
var pumpKicked = make(chan struct{}, 1)

// kickPump has the pump take the queued events.
func kickPump() {
	select {
	case pumpKicked <- struct{}{}:
	default:
	}
}

// wakeups kicks the pump for every byte the Rust side writes to the event socket.
func wakeups(socket *os.File) {
	wake := make([]byte, 256)
	for {
		if _, err := socket.Read(wake); err != nil {
			log.Printf("otapdf: the bridge's event socket failed, components stop answering: %v", err)
			return
		}
		kickPump()
	}
}

func pump() {
	for range pumpKicked {
		// Kicked, it runs next; it lets every goroutine that is ready run first (and answer,
		// or queue, what it has), so that one take finds them all.
		runtime.Gosched()
		var events *C.otapdf_event
		var count C.size_t
		batch := C.otapdf_events(&events, &count)
		if count > 0 {
			for _, event := range unsafe.Slice(events, int(count)) {
				dispatch(&event)
			}
		}
		C.otapdf_events_done(batch)
	}
}

func dispatch(event *C.otapdf_event) {
	// A panic here would stop every component's answers: answered as an error instead.
	defer func() {
		if recovered := recover(); recovered != nil {
			if event.kind == eventDeliver {
				complete(event.completion, fmt.Errorf("the Collector side panicked: %v", recovered))
			}
			log.Printf("otapdf: an event panicked: %v", recovered)
		}
	}()
	var data []byte
	if event.data != nil && event.len > 0 {
		data = unsafe.Slice((*byte)(unsafe.Pointer(event.data)), int(event.len))
	}
	switch event.kind {
	case eventDeliver:
		target, ok := outlets.Load(uint64(event.id))
		if !ok {
			complete(event.completion, consumererror.NewPermanent(errors.New("the Collector component is gone")))
			return
		}
		completion := event.completion
		var sender []byte
		if event.identity != nil && event.identity_len > 0 {
			sender = unsafe.Slice((*byte)(unsafe.Pointer(event.identity)), int(event.identity_len))
		}
		if err := target.(outlet).deliver(int(event.signal), data, sender, func(err error) { complete(completion, err) }); err != nil {
			complete(completion, err)
		}
	case eventAnswer:
		token := uint64(event.id)
		call, ok := calls.find(token)
		if !ok {
			log.Printf("otapdf: an answer for an unknown call %x", token)
			return
		}
		// The call's own hold keeps it until it takes this outcome.
		call.settled(true, event.released != 0)
		call.outcome <- outcomeError(int(event.status), string(data))
	case eventEnded:
		if target, ok := outlets.Load(uint64(event.id)); ok {
			target.(outlet).ended(string(data))
		}
	case eventRelease:
		if call, ok := calls.find(uint64(event.id)); ok {
			call.settled(false, true)
		}
	}
}
