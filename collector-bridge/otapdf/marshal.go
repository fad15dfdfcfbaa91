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

// Logs, as pdata writes ExportLogsServiceRequest.

func (w *protoWriter) logs(data plog.Logs) {
	all := data.ResourceLogs()
	for i := all.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.resourceLogs(all.At(i))
		w.ended(end, 0xa)
	}
}

func (w *protoWriter) resourceLogs(r plog.ResourceLogs) {
	w.resource(0xa, r.Resource())
	scopes := r.ScopeLogs()
	for i := scopes.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.scopeLogs(scopes.At(i))
		w.ended(end, 0x12)
	}
	w.textField(0x1a, r.SchemaUrl())
}

func (w *protoWriter) scopeLogs(s plog.ScopeLogs) {
	w.scope(0xa, s.Scope())
	records := s.LogRecords()
	for i := records.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.logRecord(records.At(i))
		w.ended(end, 0x12)
	}
	w.textField(0x1a, s.SchemaUrl())
}

func (w *protoWriter) logRecord(r plog.LogRecord) {
	w.fixed64Field(0x9, uint64(r.Timestamp()))
	w.fixed64Field(0x59, uint64(r.ObservedTimestamp()))
	w.varintField(0x10, uint64(int64(r.SeverityNumber())))
	w.textField(0x1a, r.SeverityText())
	end := w.pos
	w.value(r.Body())
	w.ended(end, 0x2a)
	w.attributes(0x32, r.Attributes())
	w.varintField(0x38, uint64(r.DroppedAttributesCount()))
	if flags := uint32(r.Flags()); flags != 0 {
		w.fixed32(flags)
		w.byte(0x45)
	}
	w.traceID(0x4a, r.TraceID())
	w.spanID(0x52, r.SpanID())
	w.textField(0x62, r.EventName())
}

// Traces, as pdata writes ExportTraceServiceRequest.

func (w *protoWriter) traces(data ptrace.Traces) {
	all := data.ResourceSpans()
	for i := all.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.resourceSpans(all.At(i))
		w.ended(end, 0xa)
	}
}

func (w *protoWriter) resourceSpans(r ptrace.ResourceSpans) {
	w.resource(0xa, r.Resource())
	scopes := r.ScopeSpans()
	for i := scopes.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.scopeSpans(scopes.At(i))
		w.ended(end, 0x12)
	}
	w.textField(0x1a, r.SchemaUrl())
}

func (w *protoWriter) scopeSpans(s ptrace.ScopeSpans) {
	w.scope(0xa, s.Scope())
	spans := s.Spans()
	for i := spans.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.span(spans.At(i))
		w.ended(end, 0x12)
	}
	w.textField(0x1a, s.SchemaUrl())
}

func (w *protoWriter) span(s ptrace.Span) {
	w.traceID(0xa, s.TraceID())
	w.spanID(0x12, s.SpanID())
	w.textField(0x1a, s.TraceState().AsRaw())
	w.spanID(0x22, s.ParentSpanID())
	if flags := s.Flags(); flags != 0 {
		w.fixed32(flags)
		w.tag2(0x85, 0x1)
	}
	w.textField(0x2a, s.Name())
	w.varintField(0x30, uint64(int64(s.Kind())))
	w.fixed64Field(0x39, uint64(s.StartTimestamp()))
	w.fixed64Field(0x41, uint64(s.EndTimestamp()))
	w.attributes(0x4a, s.Attributes())
	w.varintField(0x50, uint64(s.DroppedAttributesCount()))
	events := s.Events()
	for i := events.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.spanEvent(events.At(i))
		w.ended(end, 0x5a)
	}
	w.varintField(0x60, uint64(s.DroppedEventsCount()))
	links := s.Links()
	for i := links.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.spanLink(links.At(i))
		w.ended(end, 0x6a)
	}
	w.varintField(0x70, uint64(s.DroppedLinksCount()))
	end := w.pos
	status := s.Status()
	w.textField(0x12, status.Message())
	w.varintField(0x18, uint64(int64(status.Code())))
	w.ended(end, 0x7a)
}

func (w *protoWriter) spanEvent(e ptrace.SpanEvent) {
	w.fixed64Field(0x9, uint64(e.Timestamp()))
	w.textField(0x12, e.Name())
	w.attributes(0x1a, e.Attributes())
	w.varintField(0x20, uint64(e.DroppedAttributesCount()))
}

func (w *protoWriter) spanLink(l ptrace.SpanLink) {
	w.traceID(0xa, l.TraceID())
	w.spanID(0x12, l.SpanID())
	w.textField(0x1a, l.TraceState().AsRaw())
	w.attributes(0x22, l.Attributes())
	w.varintField(0x28, uint64(l.DroppedAttributesCount()))
	if flags := l.Flags(); flags != 0 {
		w.fixed32(flags)
		w.byte(0x35)
	}
}

// Metrics, as pdata writes ExportMetricsServiceRequest.

func (w *protoWriter) metrics(data pmetric.Metrics) {
	all := data.ResourceMetrics()
	for i := all.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.resourceMetrics(all.At(i))
		w.ended(end, 0xa)
	}
}

func (w *protoWriter) resourceMetrics(r pmetric.ResourceMetrics) {
	w.resource(0xa, r.Resource())
	scopes := r.ScopeMetrics()
	for i := scopes.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.scopeMetrics(scopes.At(i))
		w.ended(end, 0x12)
	}
	w.textField(0x1a, r.SchemaUrl())
}

func (w *protoWriter) scopeMetrics(s pmetric.ScopeMetrics) {
	w.scope(0xa, s.Scope())
	metrics := s.Metrics()
	for i := metrics.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.metric(metrics.At(i))
		w.ended(end, 0x12)
	}
	w.textField(0x1a, s.SchemaUrl())
}

func (w *protoWriter) metric(m pmetric.Metric) {
	w.textField(0xa, m.Name())
	w.textField(0x12, m.Description())
	w.textField(0x1a, m.Unit())
	end := w.pos
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		w.numberDataPoints(m.Gauge().DataPoints())
		w.ended(end, 0x2a)
	case pmetric.MetricTypeSum:
		sum := m.Sum()
		w.numberDataPoints(sum.DataPoints())
		w.varintField(0x10, uint64(int64(sum.AggregationTemporality())))
		if sum.IsMonotonic() {
			w.byte(1)
			w.byte(0x18)
		}
		w.ended(end, 0x3a)
	case pmetric.MetricTypeHistogram:
		histogram := m.Histogram()
		points := histogram.DataPoints()
		for i := points.Len() - 1; i >= 0; i-- {
			one := w.pos
			w.histogramDataPoint(points.At(i))
			w.ended(one, 0xa)
		}
		w.varintField(0x10, uint64(int64(histogram.AggregationTemporality())))
		w.ended(end, 0x4a)
	case pmetric.MetricTypeExponentialHistogram:
		histogram := m.ExponentialHistogram()
		points := histogram.DataPoints()
		for i := points.Len() - 1; i >= 0; i-- {
			one := w.pos
			w.exponentialHistogramDataPoint(points.At(i))
			w.ended(one, 0xa)
		}
		w.varintField(0x10, uint64(int64(histogram.AggregationTemporality())))
		w.ended(end, 0x52)
	case pmetric.MetricTypeSummary:
		points := m.Summary().DataPoints()
		for i := points.Len() - 1; i >= 0; i-- {
			one := w.pos
			w.summaryDataPoint(points.At(i))
			w.ended(one, 0xa)
		}
		w.ended(end, 0x5a)
	}
	w.attributes(0x62, m.Metadata())
}

func (w *protoWriter) numberDataPoints(points pmetric.NumberDataPointSlice) {
	for i := points.Len() - 1; i >= 0; i-- {
		end := w.pos
		w.numberDataPoint(points.At(i))
		w.ended(end, 0xa)
	}
}

func (w *protoWriter) numberDataPoint(p pmetric.NumberDataPoint) {
	w.attributes(0x3a, p.Attributes())
	w.fixed64Field(0x11, uint64(p.StartTimestamp()))
	w.fixed64Field(0x19, uint64(p.Timestamp()))
	switch p.ValueType() {
	case pmetric.NumberDataPointValueTypeDouble:
		w.fixed64(math.Float64bits(p.DoubleValue()))
		w.byte(0x21)
	case pmetric.NumberDataPointValueTypeInt:
		w.fixed64(uint64(p.IntValue()))
		w.byte(0x31)
	}
	w.exemplars(0x2a, p.Exemplars())
	w.varintField(0x40, uint64(p.Flags()))
}

// optionalDouble writes a double field with presence (a histogram's sum, min, max).
func (w *protoWriter) optionalDouble(tag byte, has bool, v float64) {
	if has {
		w.fixed64(math.Float64bits(v))
		w.byte(tag)
	}
}

func (w *protoWriter) histogramDataPoint(p pmetric.HistogramDataPoint) {
	w.attributes(0x4a, p.Attributes())
	w.fixed64Field(0x11, uint64(p.StartTimestamp()))
	w.fixed64Field(0x19, uint64(p.Timestamp()))
	w.fixed64Field(0x21, p.Count())
	w.optionalDouble(0x29, p.HasSum(), p.Sum())
	if counts := p.BucketCounts(); counts.Len() > 0 {
		end := w.pos
		for i := counts.Len() - 1; i >= 0; i-- {
			w.fixed64(counts.At(i))
		}
		w.ended(end, 0x32)
	}
	if bounds := p.ExplicitBounds(); bounds.Len() > 0 {
		end := w.pos
		for i := bounds.Len() - 1; i >= 0; i-- {
			w.fixed64(math.Float64bits(bounds.At(i)))
		}
		w.ended(end, 0x3a)
	}
	w.exemplars(0x42, p.Exemplars())
	w.varintField(0x50, uint64(p.Flags()))
	w.optionalDouble(0x59, p.HasMin(), p.Min())
	w.optionalDouble(0x61, p.HasMax(), p.Max())
}

func (w *protoWriter) exponentialHistogramDataPoint(p pmetric.ExponentialHistogramDataPoint) {
	w.attributes(0xa, p.Attributes())
	w.fixed64Field(0x11, uint64(p.StartTimestamp()))
	w.fixed64Field(0x19, uint64(p.Timestamp()))
	w.fixed64Field(0x21, p.Count())
	w.optionalDouble(0x29, p.HasSum(), p.Sum())
	if scale := p.Scale(); scale != 0 {
		w.zigzag32(scale)
		w.byte(0x30)
	}
	w.fixed64Field(0x39, p.ZeroCount())
	w.buckets(0x42, p.Positive())
	w.buckets(0x4a, p.Negative())
	w.varintField(0x50, uint64(p.Flags()))
	w.exemplars(0x5a, p.Exemplars())
	w.optionalDouble(0x61, p.HasMin(), p.Min())
	w.optionalDouble(0x69, p.HasMax(), p.Max())
	w.doubleField(0x71, p.ZeroThreshold())
}

func (w *protoWriter) buckets(tag byte, b pmetric.ExponentialHistogramDataPointBuckets) {
	end := w.pos
	if offset := b.Offset(); offset != 0 {
		w.zigzag32(offset)
		w.byte(0x8)
	}
	if counts := b.BucketCounts(); counts.Len() > 0 {
		packed := w.pos
		for i := counts.Len() - 1; i >= 0; i-- {
			w.varint(counts.At(i))
		}
		w.ended(packed, 0x12)
	}
	w.ended(end, tag)
}

func (w *protoWriter) summaryDataPoint(p pmetric.SummaryDataPoint) {
	w.attributes(0x3a, p.Attributes())
	w.fixed64Field(0x11, uint64(p.StartTimestamp()))
	w.fixed64Field(0x19, uint64(p.Timestamp()))
	w.fixed64Field(0x21, p.Count())
	w.doubleField(0x29, p.Sum())
	quantiles := p.QuantileValues()
	for i := quantiles.Len() - 1; i >= 0; i-- {
		end := w.pos
		quantile := quantiles.At(i)
		w.doubleField(0x9, quantile.Quantile())
		w.doubleField(0x11, quantile.Value())
		w.ended(end, 0x32)
	}
	w.varintField(0x40, uint64(p.Flags()))
}

func (w *protoWriter) exemplars(tag byte, exemplars pmetric.ExemplarSlice) {
	for i := exemplars.Len() - 1; i >= 0; i-- {
		end := w.pos
		e := exemplars.At(i)
		w.attributes(0x3a, e.FilteredAttributes())
		w.fixed64Field(0x11, uint64(e.Timestamp()))
		switch e.ValueType() {
		case pmetric.ExemplarValueTypeDouble:
			w.fixed64(math.Float64bits(e.DoubleValue()))
			w.byte(0x19)
		case pmetric.ExemplarValueTypeInt:
			w.fixed64(uint64(e.IntValue()))
			w.byte(0x31)
		}
		w.traceID(0x2a, e.TraceID())
		w.spanID(0x22, e.SpanID())
		w.ended(end, tag)
	}
}
