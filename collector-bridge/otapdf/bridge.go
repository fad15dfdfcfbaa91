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
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
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
	startPump()
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
func start(role int, config any, handle uint64) (uint64, error) {
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

// lentRequest is a request lent to otap-df while its call runs, the Collector's data it
// was marshalled from (the field of its signal), and the call's context (its client.Info).
// Typed fields, not an interface: nothing is allocated to note one.
type lentRequest struct {
	size    int
	signal  int
	logs    plog.Logs
	traces  ptrace.Traces
	metrics pmetric.Metrics
	ctx     context.Context
}

// lent finds the requests lent to otap-df by address: a payload that comes back out of the
// component in the very bytes it went in with (a processor that kept it as it was) is
// handed on as the data it was made from, not unmarshalled again. What was lent lives in
// its call's record (reused); the map holds the record's slot — no pointer, so the garbage
// collector has nothing to scan in it, and nothing is allocated to note a request (a
// sync.Map allocates an entry for every store).
var lent = struct {
	mu sync.Mutex
	by map[uintptr]uint32
}{by: map[uintptr]uint32{}}

// submitted is a request handed to otap-df: its bytes pinned until released, and where its
// outcome arrives. Each is kept for the next call once its own is over (see callTable), with
// its Pinner and channel: a call then allocates neither, nor sets the finaliser a Pinner's
// first Pin sets.
type submitted struct {
	// Its place in the table, for good, and the use it is in now: a token names both.
	slot       uint32
	generation atomic.Uint32
	pinner     runtime.Pinner
	outcome    chan error
	// How far it got: answered, released (each once; in either order, both end it).
	mu       sync.Mutex
	answered bool
	released bool
	// Who still has to let go of it before it is reused: the call, once it has taken its
	// outcome, and the settlement, once answered and released.
	holds atomic.Int32
	// Where the submit writes the wake-up it says is owed, and why it refused (kept here:
	// a local whose address crosses into C would be allocated for each call).
	wake    C.uint64_t
	message *C.char
	// The buffer its requests are marshalled into (kept up to keptBuffer), and the writer.
	buf    []byte
	writer protoWriter
	// What it lends, while a processor or connector may hand it back (found through lent).
	lent lentRequest
}

// token names the call's present use of it.
func (call *submitted) token() uint64 {
	return uint64(call.slot)<<32 | uint64(call.generation.Load())
}

// settled records an answer (with whether it released the bytes) or a release; once both
// are in, the bytes are unpinned and the settlement lets go of the call.
func (call *submitted) settled(answer, release bool) {
	call.mu.Lock()
	call.answered = call.answered || answer
	call.released = call.released || release
	done := call.answered && call.released
	call.mu.Unlock()
	if done {
		call.pinner.Unpin()
		call.letGo()
	}
}

// lend notes what the call lends, found by the address of its bytes (see lent).
func (call *submitted) lend(address uintptr, what lentRequest) {
	lent.mu.Lock()
	call.lent = what
	lent.by[address] = call.slot
	lent.mu.Unlock()
}

// unlend forgets what lend noted, before the call lets go of its record (which may then be
// reused).
func (call *submitted) unlend(address uintptr) {
	lent.mu.Lock()
	delete(lent.by, address)
	call.lent = lentRequest{}
	lent.mu.Unlock()
}

// at is the call record in `slot`.
func (t *callTable) at(slot uint32) *submitted {
	return (*t.slots.Load())[slot]
}

// letGo ends one hold on the call; the last one gives it back to the table.
func (call *submitted) letGo() {
	if call.holds.Add(-1) == 0 {
		calls.put(call)
	}
}

// callTable holds every submitted ever made, by slot, and those free for a call. It grows to
// the most calls in flight at once and no further; finding a call by its token takes no lock
// (the slots are copied when one is added, which happens only while it grows).
type callTable struct {
	mu    sync.Mutex
	slots atomic.Pointer[[]*submitted]
	free  []*submitted
	inUse int
}

// calls are the submitted requests, answered and released or not.
var calls callTable

// take is a submitted for a new call, not answered nor released, held by the call and by its
// settlement.
func (t *callTable) take() *submitted {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inUse++
	var call *submitted
	if n := len(t.free); n > 0 {
		call = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		var slots []*submitted
		if current := t.slots.Load(); current != nil {
			slots = *current
		}
		call = &submitted{slot: uint32(len(slots)), outcome: make(chan error, 1)}
		grown := append(slots[:len(slots):len(slots)], call)
		t.slots.Store(&grown)
	}
	call.mu.Lock()
	call.answered, call.released = false, false
	call.mu.Unlock()
	call.holds.Store(2)
	return call
}

// put takes back a call whose use is over: its token names nothing from now on.
func (t *callTable) put(call *submitted) {
	call.generation.Add(1)
	t.mu.Lock()
	t.free = append(t.free, call)
	t.inUse--
	t.mu.Unlock()
}

// find is the call `token` names, while its use lasts.
func (t *callTable) find(token uint64) (*submitted, bool) {
	current := t.slots.Load()
	if current == nil || token>>32 >= uint64(len(*current)) {
		return nil, false
	}
	call := (*current)[token>>32]
	if call.generation.Load() != uint32(token) {
		return nil, false
	}
	return call, true
}

// pending is the number of calls not yet over: outcome not taken, or bytes not released.
func (t *callTable) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inUse
}

// consume hands a component the OTLP export request marshalled from `original` (its
// signal's field) and waits for its outcome (the goroutine parks; no thread is held in a C
// call). The bytes are lent, not copied: pinned until otap-df no longer references them,
// which may be after the outcome (an exporter still merging them), when the release event
// unpins them; they are written into a buffer the call's record keeps for its next use
// (see marshal). When the component can give the request back (`lends`: a processor, a
// connector), it is noted with its Collector data for the way back.
//
// The caller's identity (client.Info's Auth, as the Collector's authenticator left it)
// crosses with the request: our nodes see it as the payload's sender.
func consume(ctx context.Context, id uint64, signal int, records int, original lentRequest, lends bool) error {
	original.signal = signal
	size := original.protoSize()
	if size == 0 {
		return nil
	}
	call := calls.take()
	request, err := call.marshal(size, &original)
	if err != nil {
		call.holds.Store(1)
		call.letGo()
		return consumererror.NewPermanent(err)
	}
	address := uintptr(unsafe.Pointer(&request[0]))
	if lends {
		original.size, original.ctx = len(request), ctx
		call.lend(address, original)
	}
	call.pinner.Pin(&request[0])
	token := call.token()
	data, length := bytesPointer(request)
	var status C.int32_t
	call.wake, call.message = 0, nil
	if sender := senderOf(ctx); sender != nil {
		who, whoSize := bytesPointer(sender)
		status = C.otapdf_submit_as(C.uint64_t(id), C.uint32_t(signal), data, length, C.uint64_t(records), C.uint64_t(token), who, whoSize, &call.wake, &call.message)
	} else {
		status = C.otapdf_submit(C.uint64_t(id), C.uint32_t(signal), data, length, C.uint64_t(records), C.uint64_t(token), &call.wake, &call.message)
	}
	if status != statusAccepted {
		// Refused now: released, and no event names the token.
		message := call.message
		call.pinner.Unpin()
		call.holds.Store(1)
		if lends {
			call.unlend(address)
		}
		call.letGo()
		why, _ := takeString(message)
		return outcomeError(int(status), why)
	}
	wakeLater(call.wake)
	err = <-call.outcome
	if lends {
		call.unlend(address)
	}
	call.letGo()
	return err
}

// senderOf is the identity of the caller in `ctx` as otap-df reads it (JSON: subject and
// attributes), nil when the call carries none. The subject is the `subject` attribute (what
// our authorizer and the Collector's oidc authenticator set), else `username` (basic
// auth), else "collector-client"; every string or []string attribute crosses.
func senderOf(ctx context.Context) []byte {
	auth := client.FromContext(ctx).Auth
	if auth == nil {
		return nil
	}
	subject := "collector-client"
	for _, name := range []string{"subject", "username"} {
		if value, ok := auth.GetAttribute(name).(string); ok && value != "" {
			subject = value
			break
		}
	}
	attributes := [][2]string{}
	for _, name := range auth.GetAttributeNames() {
		if name == "subject" || name == "identity" {
			continue
		}
		switch value := auth.GetAttribute(name).(type) {
		case string:
			attributes = append(attributes, [2]string{name, value})
		case []string:
			for _, one := range value {
				attributes = append(attributes, [2]string{name, one})
			}
		}
	}
	text, err := json.Marshal(struct {
		Subject    string      `json:"subject"`
		Attributes [][2]string `json:"attributes"`
	}{subject, attributes})
	if err != nil {
		return nil
	}
	return text
}

// outcomeError is the Collector's error for an outcome.
func outcomeError(status int, why string) error {
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
	// Settled on this thread: the engine's threads are not woken for it, and what the
	// settlement queues (a processor's caller's answer) is taken by the pump, kicked here.
	C.otapdf_complete(completion, C.int32_t(status), data, size, 1)
	kickPump()
}

// wakeLater gives a wake-up owed to a component's engine (none: 0), whose inlet slept when
// this goroutine queued its request — after the other goroutines that are ready had their
// turn and queued theirs, so that one wake-up of the engine's thread (a write, two context
// switches, with more threads than CPUs a preempted one) takes them all. With none ready,
// Gosched returns at once.
func wakeLater(wake C.uint64_t) {
	if wake != 0 {
		runtime.Gosched()
		// The engine's thread, woken, hands its deliveries over at once where it shares
		// this CPU: the pump, kicked, takes them without a byte on the socket.
		C.otapdf_wake(wake, 1)
		kickPump()
	}
}
