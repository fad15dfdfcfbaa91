package otapdf

// OTLP marshalling into a buffer the caller keeps. pdata marshals only into a buffer of its
// own (`MarshalLogs` allocates one per request): with a request in flight per connection,
// those buffers are most of what our processor adds to the Collector's garbage. The writer
// here walks pdata's public API and writes what pdata's own marshaller writes, byte for byte
// — the same fields in the same order, backwards from the end, as pdata does — into a
// buffer of the size pdata computes (`LogsSize`). A field the public API does not show
// (pdata keeps them from the wire: a resource's entity references, deprecated and
// profile-only fields) makes the encoding come out at another size; that is caught and the
// request is marshalled by pdata instead.

import (
	"encoding/binary"
	"math"
	"math/bits"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// protoWriter writes protobuf backwards: each field before the ones written so far, a
// message's length once its fields are written.
type protoWriter struct {
	buf []byte
	pos int
	// A map's entries, taken in order to be written in reverse (pcommon.Map has no index);
	// nested maps stack theirs above.
	entries []mapEntry
	// How far entries was used: cleared after each request, so that nothing the request
	// held is kept alive by the writer.
	used int
}

type mapEntry struct {
	key   string
	value pcommon.Value
}

// keptBuffer is the largest buffer a call record keeps for its next request; a larger
// request is marshalled into one of its own.
const keptBuffer = 1 << 20

// protoSize is the size of the request pdata marshals from `what`.
func (what *lentRequest) protoSize() int {
	switch what.signal {
	case signalLogs:
		return (&plog.ProtoMarshaler{}).LogsSize(what.logs)
	case signalTraces:
		return (&ptrace.ProtoMarshaler{}).TracesSize(what.traces)
	default:
		return (&pmetric.ProtoMarshaler{}).MetricsSize(what.metrics)
	}
}

// marshalled is the request pdata marshals from `what`, in a buffer of its own.
func (what *lentRequest) marshalled() ([]byte, error) {
	switch what.signal {
	case signalLogs:
		return (&plog.ProtoMarshaler{}).MarshalLogs(what.logs)
	case signalTraces:
		return (&ptrace.ProtoMarshaler{}).MarshalTraces(what.traces)
	default:
		return (&pmetric.ProtoMarshaler{}).MarshalMetrics(what.metrics)
	}
}

// marshal is the request `what` holds (`size` bytes, its protoSize), written into the
// call's own buffer; pdata marshals it where the writer's encoding would not be pdata's.
func (call *submitted) marshal(size int, what *lentRequest) ([]byte, error) {
	buf := call.buf
	if cap(buf) < size {
		buf = make([]byte, size)
		if size <= keptBuffer {
			call.buf = buf
		}
	}
	buf = buf[:size]
	if call.writer.request(buf, what) {
		return buf, nil
	}
	return what.marshalled()
}

// request writes the request `what` holds into buf; false when the encoding does not fill
// buf exactly (shorter, or longer: an index below its start).
func (w *protoWriter) request(buf []byte, what *lentRequest) (ok bool) {
	w.buf, w.pos = buf, len(buf)
	defer func() {
		clear(w.entries[:w.used])
		w.entries, w.used, w.buf = w.entries[:0], 0, nil
		if recover() != nil {
			ok = false
		}
	}()
	switch what.signal {
	case signalLogs:
		w.logs(what.logs)
	case signalTraces:
		w.traces(what.traces)
	default:
		w.metrics(what.metrics)
	}
	return w.pos == 0
}

func (w *protoWriter) byte(b byte) {
	w.pos--
	w.buf[w.pos] = b
}

// tag2 writes a two-byte tag (fields 16 and up): `first` is the one that comes first.
func (w *protoWriter) tag2(first, second byte) {
	w.byte(second)
	w.byte(first)
}

func (w *protoWriter) varint(v uint64) {
	w.pos -= (bits.Len64(v|1) + 6) / 7
	at := w.pos
	for v >= 1<<7 {
		w.buf[at] = byte(v&0x7f | 0x80)
		v >>= 7
		at++
	}
	w.buf[at] = byte(v)
}

func (w *protoWriter) fixed64(v uint64) {
	w.pos -= 8
	binary.LittleEndian.PutUint64(w.buf[w.pos:], v)
}

func (w *protoWriter) fixed32(v uint32) {
	w.pos -= 4
	binary.LittleEndian.PutUint32(w.buf[w.pos:], v)
}

func (w *protoWriter) zigzag32(v int32) {
	w.varint(uint64((uint32(v) << 1) ^ uint32(v>>31)))
}

// ended writes the length of what was written since `end` (a message, a packed field) and
// its tag.
func (w *protoWriter) ended(end int, tag byte) {
	w.varint(uint64(end - w.pos))
	w.byte(tag)
}

// text writes a length-delimited string field, empty or not.
func (w *protoWriter) text(tag byte, s string) {
	w.pos -= len(s)
	copy(w.buf[w.pos:], s)
	w.ended(w.pos+len(s), tag)
}

// textField writes a string field when it is not empty.
func (w *protoWriter) textField(tag byte, s string) {
	if len(s) > 0 {
		w.text(tag, s)
	}
}

func (w *protoWriter) varintField(tag byte, v uint64) {
	if v != 0 {
		w.varint(v)
		w.byte(tag)
	}
}

func (w *protoWriter) fixed64Field(tag byte, v uint64) {
	if v != 0 {
		w.fixed64(v)
		w.byte(tag)
	}
}

func (w *protoWriter) doubleField(tag byte, v float64) {
	if v != 0 {
		w.fixed64(math.Float64bits(v))
		w.byte(tag)
	}
}

// optionalDouble writes a double field with presence (a histogram's sum, min, max).
func (w *protoWriter) optionalDouble(tag byte, has bool, v float64) {
	if has {
		w.fixed64(math.Float64bits(v))
		w.byte(tag)
	}
}

// id writes a trace or span ID field (always: empty when the ID is).
func (w *protoWriter) id(tag byte, id []byte, empty bool) {
	end := w.pos
	if !empty {
		w.pos -= len(id)
		copy(w.buf[w.pos:], id)
	}
	w.ended(end, tag)
}

func (w *protoWriter) traceID(tag byte, id pcommon.TraceID) { w.id(tag, id[:], id.IsEmpty()) }

func (w *protoWriter) spanID(tag byte, id pcommon.SpanID) { w.id(tag, id[:], id.IsEmpty()) }

// attributes writes a map's entries as repeated KeyValue fields, in the map's order.
func (w *protoWriter) attributes(tag byte, m pcommon.Map) {
	start := len(w.entries)
	for key, value := range m.All() {
		w.entries = append(w.entries, mapEntry{key, value})
	}
	w.used = max(w.used, len(w.entries))
	for i := len(w.entries) - 1; i >= start; i-- {
		entry := w.entries[i]
		end := w.pos
		w.keyValue(entry.key, entry.value)
		w.ended(end, tag)
	}
	w.entries = w.entries[:start]
}

func (w *protoWriter) keyValue(key string, value pcommon.Value) {
	w.textField(0xa, key)
	end := w.pos
	w.value(value)
	w.ended(end, 0x12)
}

// value writes an AnyValue's fields.
func (w *protoWriter) value(v pcommon.Value) {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		w.text(0xa, v.Str())
	case pcommon.ValueTypeBool:
		if v.Bool() {
			w.byte(1)
		} else {
			w.byte(0)
		}
		w.byte(0x10)
	case pcommon.ValueTypeInt:
		w.varint(uint64(v.Int()))
		w.byte(0x18)
	case pcommon.ValueTypeDouble:
		w.fixed64(math.Float64bits(v.Double()))
		w.byte(0x21)
	case pcommon.ValueTypeSlice:
		end := w.pos
		values := v.Slice()
		for i := values.Len() - 1; i >= 0; i-- {
			one := w.pos
			w.value(values.At(i))
			w.ended(one, 0xa)
		}
		w.ended(end, 0x2a)
	case pcommon.ValueTypeMap:
		end := w.pos
		w.attributes(0xa, v.Map())
		w.ended(end, 0x32)
	case pcommon.ValueTypeBytes:
		// By byte: AsRaw copies.
		raw := v.Bytes()
		end := w.pos
		w.pos -= raw.Len()
		for i := range raw.Len() {
			w.buf[w.pos+i] = raw.At(i)
		}
		w.ended(end, 0x3a)
	}
}

func (w *protoWriter) resource(tag byte, r pcommon.Resource) {
	end := w.pos
	w.attributes(0xa, r.Attributes())
	w.varintField(0x10, uint64(r.DroppedAttributesCount()))
	w.ended(end, tag)
}

func (w *protoWriter) scope(tag byte, s pcommon.InstrumentationScope) {
	end := w.pos
	w.textField(0xa, s.Name())
	w.textField(0x12, s.Version())
	w.attributes(0x1a, s.Attributes())
	w.varintField(0x20, uint64(s.DroppedAttributesCount()))
	w.ended(end, tag)
}
