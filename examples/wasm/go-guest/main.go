// An otap-df guest in Go: a bearer_token_authorizer whose tokens come from its `config:`,
// and a key_value_store held in the guest's memory, both through otap-df's guest ABI
// version 1 (extensions/wasm/README.md).
//
// Build it (Go 1.24 or newer; no Rust toolchain involved):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o guest.wasm .
package main

import (
	"encoding/json"
	"unsafe"
)

// The host's functions (module `otap`): a log line, and a monotonic clock.
//
//go:wasmimport otap log
func hostLog(level int32, message unsafe.Pointer, length int32)

//go:wasmimport otap monotonic_ns
func monotonicNs() int64

func logInfo(message string) {
	if len(message) > 0 {
		hostLog(2, unsafe.Pointer(unsafe.StringData(message)), int32(len(message)))
	}
}

// pack is the ABI's `pointer << 32 | length` of bytes the host reads back; they must stay
// alive until the next call, so each result is kept in a package variable.
func pack(bytes []byte) int64 {
	if len(bytes) == 0 {
		return 0
	}
	return int64(uintptr(unsafe.Pointer(&bytes[0])))<<32 | int64(len(bytes))
}

//go:wasmexport otap_abi_version
func abiVersion() int32 { return 1 }

// input is the buffer the host writes its input into; it stays the host's until the next
// otap_alloc.
var input []byte

//go:wasmexport otap_alloc
func alloc(size int32) int32 {
	input = make([]byte, size)
	return int32(uintptr(unsafe.Pointer(&input[0])))
}

// The configuration: `config: { tokens: { <token>: <identity>, ... } }`.
type config struct {
	Tokens map[string]string `json:"tokens"`
}

var tokens map[string]string

//go:wasmexport otap_start
func start(pointer, length int32) int32 {
	var parsed config
	if err := json.Unmarshal(input[:length], &parsed); err != nil {
		logInfo("config is not what this guest reads: " + err.Error())
		return 1
	}
	tokens = parsed.Tokens
	logInfo("started")
	return 0
}

var identity []byte

//go:wasmexport otap_authorize
func authorize(pointer, length int32) int64 {
	if length == 0 {
		return -1
	}
	name, ok := tokens[string(input[:length])]
	if !ok {
		return -2
	}
	identity = []byte(name)
	return pack(identity)
}

// The store: values by key, each with its expiry (0: none), in nanoseconds of the host's
// monotonic clock. Entries are pointers so that a value is overwritten in place.
type entry struct {
	value   []byte
	expires int64
}

var store = map[string]*entry{}

// live is the entry of key when it is there and not expired (an expired one is removed). A
// lookup with string(key) does not copy the key: the compiler uses the bytes as they are.
func live(key []byte) *entry {
	e := store[string(key)]
	if e != nil && e.expires != 0 && monotonicNs() >= e.expires {
		delete(store, string(key))
		return nil
	}
	return e
}

func expiry(ttlMs int64) int64 {
	if ttlMs < 0 {
		return 0
	}
	return monotonicNs() + ttlMs*1_000_000
}

//go:wasmexport otap_kv_get
func kvGet(key, keyLength int32) int64 {
	e := live(input[:keyLength])
	if e == nil {
		return -1
	}
	// The host copies the answer before its next call: the entry's own bytes will do. Any
	// non-negative answer is a hit: an empty value packs as 0.
	return pack(e.value)
}

// put stores value under key, overwriting a present entry's bytes in place.
func put(key, value []byte, ttlMs int64) {
	if e := store[string(key)]; e != nil {
		e.value = append(e.value[:0], value...)
		e.expires = expiry(ttlMs)
		return
	}
	store[string(key)] = &entry{value: append([]byte(nil), value...), expires: expiry(ttlMs)}
}

//go:wasmexport otap_kv_set
func kvSet(key, keyLength, value, valueLength int32, ttlMs int64) int32 {
	put(input[:keyLength], input[keyLength:keyLength+valueLength], ttlMs)
	return 0
}

//go:wasmexport otap_kv_set_if_absent
func kvSetIfAbsent(key, keyLength, value, valueLength int32, ttlMs int64) int32 {
	if live(input[:keyLength]) != nil {
		return 0
	}
	put(input[:keyLength], input[keyLength:keyLength+valueLength], ttlMs)
	return 1
}

//go:wasmexport otap_kv_delete
func kvDelete(key, keyLength int32) int32 {
	if live(input[:keyLength]) == nil {
		return 0
	}
	delete(store, string(input[:keyLength]))
	return 1
}

func main() {}
