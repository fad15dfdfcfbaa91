package otapdf

import (
	"bytes"
	"math"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/testdata"
)

// everyValue puts an attribute of every AnyValue kind, nested ones and empty ones, in m.
func everyValue(m pcommon.Map) {
	m.PutStr("text", "value")
	m.PutStr("", "")
	m.PutBool("yes", true)
	m.PutBool("no", false)
	m.PutInt("negative", -7)
	m.PutInt("zero", 0)
	m.PutDouble("double", -1.5)
	m.PutEmptyBytes("bytes").FromRaw([]byte{0, 1, 2, 255})
	m.PutEmptyBytes("no-bytes")
	m.PutEmpty("empty")
	list := m.PutEmptySlice("list")
	list.AppendEmpty().SetStr("in a list")
	list.AppendEmpty()
	list.AppendEmpty().SetEmptyMap().PutInt("deep", 1)
	m.PutEmptySlice("no-list")
	inner := m.PutEmptyMap("map")
	inner.PutStr("a", "b")
	inner.PutEmptyMap("nested").PutEmptySlice("x").AppendEmpty().SetDouble(math.Inf(1))
	m.PutEmptyMap("no-map")
}

func everyLogsField() plog.Logs {
	data := plog.NewLogs()
	resource := data.ResourceLogs().AppendEmpty()
	resource.SetSchemaUrl("https://schema/1")
	everyValue(resource.Resource().Attributes())
	resource.Resource().SetDroppedAttributesCount(3)
	data.ResourceLogs().AppendEmpty()
	scope := resource.ScopeLogs().AppendEmpty()
	scope.SetSchemaUrl("https://schema/2")
	scope.Scope().SetName("scope")
	scope.Scope().SetVersion("1.2")
	everyValue(scope.Scope().Attributes())
	scope.Scope().SetDroppedAttributesCount(300)
	record := scope.LogRecords().AppendEmpty()
	record.SetTimestamp(1)
	record.SetObservedTimestamp(math.MaxUint64)
	record.SetSeverityNumber(plog.SeverityNumberFatal4)
	record.SetSeverityText("FATAL")
	record.Body().SetEmptyMap().PutStr("body", "map")
	everyValue(record.Attributes())
	record.SetDroppedAttributesCount(1)
	record.SetFlags(plog.DefaultLogRecordFlags.WithIsSampled(true))
	record.SetTraceID(pcommon.TraceID{1, 2, 3})
	record.SetSpanID(pcommon.SpanID{4, 5})
	record.SetEventName("event")
	scope.LogRecords().AppendEmpty()
	resource.ScopeLogs().AppendEmpty()
	return data
}

func everyTracesField() ptrace.Traces {
	data := testdata.GenerateTraces(3)
	resource := data.ResourceSpans().AppendEmpty()
	resource.SetSchemaUrl("https://schema")
	scope := resource.ScopeSpans().AppendEmpty()
	scope.SetSchemaUrl("https://schema/scope")
	span := scope.Spans().AppendEmpty()
	span.SetTraceID(pcommon.TraceID{9})
	span.SetSpanID(pcommon.SpanID{8})
	span.TraceState().FromRaw("a=b")
	span.SetParentSpanID(pcommon.SpanID{7})
	span.SetFlags(0x301)
	span.SetName("span")
	span.SetKind(ptrace.SpanKindConsumer)
	span.SetStartTimestamp(5)
	span.SetEndTimestamp(6)
	everyValue(span.Attributes())
	span.SetDroppedAttributesCount(2)
	event := span.Events().AppendEmpty()
	event.SetTimestamp(7)
	event.SetName("event")
	everyValue(event.Attributes())
	event.SetDroppedAttributesCount(1)
	span.Events().AppendEmpty()
	span.SetDroppedEventsCount(4)
	link := span.Links().AppendEmpty()
	link.SetTraceID(pcommon.TraceID{1})
	link.SetSpanID(pcommon.SpanID{2})
	link.TraceState().FromRaw("c=d")
	everyValue(link.Attributes())
	link.SetDroppedAttributesCount(5)
	link.SetFlags(0x101)
	span.Links().AppendEmpty()
	span.SetDroppedLinksCount(6)
	span.Status().SetCode(ptrace.StatusCodeError)
	span.Status().SetMessage("failed")
	scope.Spans().AppendEmpty()
	return data
}

func everyMetricsField() pmetric.Metrics {
	data := testdata.GenerateMetricsAllTypes()
	testdata.GenerateMetrics(5).ResourceMetrics().MoveAndAppendTo(data.ResourceMetrics())
	testdata.GenerateMetricsAllTypesEmpty().ResourceMetrics().MoveAndAppendTo(data.ResourceMetrics())
	resource := data.ResourceMetrics().AppendEmpty()
	resource.SetSchemaUrl("https://schema")
	scope := resource.ScopeMetrics().AppendEmpty()
	scope.SetSchemaUrl("https://schema/scope")
	exemplars := func(s pmetric.ExemplarSlice) {
		e := s.AppendEmpty()
		everyValue(e.FilteredAttributes())
		e.SetTimestamp(3)
		e.SetIntValue(-4)
		e.SetTraceID(pcommon.TraceID{1})
		e.SetSpanID(pcommon.SpanID{2})
		s.AppendEmpty().SetDoubleValue(0.5)
		s.AppendEmpty()
	}

	gauge := scope.Metrics().AppendEmpty()
	gauge.SetName("gauge")
	gauge.SetDescription("described")
	gauge.SetUnit("s")
	everyValue(gauge.Metadata())
	point := gauge.SetEmptyGauge().DataPoints().AppendEmpty()
	everyValue(point.Attributes())
	point.SetStartTimestamp(1)
	point.SetTimestamp(2)
	point.SetIntValue(math.MinInt64)
	exemplars(point.Exemplars())
	point.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
	gauge.Gauge().DataPoints().AppendEmpty()

	sum := scope.Metrics().AppendEmpty().SetEmptySum()
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	sum.SetIsMonotonic(true)
	sum.DataPoints().AppendEmpty().SetDoubleValue(-0.25)

	histogram := scope.Metrics().AppendEmpty().SetEmptyHistogram()
	histogram.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	hp := histogram.DataPoints().AppendEmpty()
	everyValue(hp.Attributes())
	hp.SetStartTimestamp(1)
	hp.SetTimestamp(2)
	hp.SetCount(3)
	hp.SetSum(0)
	hp.BucketCounts().FromRaw([]uint64{1, 0, math.MaxUint64})
	hp.ExplicitBounds().FromRaw([]float64{-1, 0, 1})
	exemplars(hp.Exemplars())
	hp.SetFlags(1)
	hp.SetMin(-2)
	hp.SetMax(2)
	histogram.DataPoints().AppendEmpty()

	exponential := scope.Metrics().AppendEmpty().SetEmptyExponentialHistogram()
	exponential.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	ep := exponential.DataPoints().AppendEmpty()
	everyValue(ep.Attributes())
	ep.SetStartTimestamp(1)
	ep.SetTimestamp(2)
	ep.SetCount(3)
	ep.SetSum(4.5)
	ep.SetScale(-3)
	ep.SetZeroCount(2)
	ep.Positive().SetOffset(-129)
	ep.Positive().BucketCounts().FromRaw([]uint64{0, 1, 300, math.MaxUint64})
	ep.Negative().SetOffset(64)
	ep.SetFlags(1)
	exemplars(ep.Exemplars())
	ep.SetMin(0)
	ep.SetMax(9)
	ep.SetZeroThreshold(1e-9)
	exponential.DataPoints().AppendEmpty()

	summary := scope.Metrics().AppendEmpty().SetEmptySummary()
	sp := summary.DataPoints().AppendEmpty()
	everyValue(sp.Attributes())
	sp.SetStartTimestamp(1)
	sp.SetTimestamp(2)
	sp.SetCount(3)
	sp.SetSum(-4)
	quantile := sp.QuantileValues().AppendEmpty()
	quantile.SetQuantile(0.99)
	quantile.SetValue(12)
	sp.QuantileValues().AppendEmpty()
	sp.SetFlags(1)
	summary.DataPoints().AppendEmpty()

	scope.Metrics().AppendEmpty().SetName("no data")
	return data
}

// written is what the call's writer makes of `what`, and pdata's own marshalling of it.
func written(t *testing.T, call *submitted, what lentRequest) (ours, pdatas []byte) {
	t.Helper()
	size := what.protoSize()
	buf := make([]byte, size)
	if !call.writer.request(buf, &what) {
		t.Fatalf("the writer's encoding of %d bytes is not pdata's size", size)
	}
	pdatas, err := what.marshalled()
	if err != nil {
		t.Fatal(err)
	}
	return buf, pdatas
}

func TestTheWriterWritesWhatPdataWritesByteForByte(t *testing.T) {
	call := &submitted{}
	for name, what := range map[string]lentRequest{
		"logs, every field":          {signal: signalLogs, logs: everyLogsField()},
		"logs, pdata's test data":    {signal: signalLogs, logs: testdata.GenerateLogs(20)},
		"logs, 100 records":          {signal: signalLogs, logs: logs(100, "bench")},
		"traces, every field":        {signal: signalTraces, traces: everyTracesField()},
		"metrics, every kind":        {signal: signalMetrics, metrics: everyMetricsField()},
		"metrics, pdata's test data": {signal: signalMetrics, metrics: testdata.GenerateMetrics(20)},
	} {
		ours, pdatas := written(t, call, what)
		if !bytes.Equal(ours, pdatas) {
			t.Errorf("%s: %d bytes differ from pdata's %d:\n%x\n%x", name, len(ours), len(pdatas), ours, pdatas)
		}
	}
}

func TestAFieldThePublicAPIDoesNotShowIsMarshalledByPdata(t *testing.T) {
	// A resource with an entity reference (field 3: pdata keeps it; its public API shows
	// none): the writer's encoding comes out 2 bytes short.
	wire := []byte{0x0a, 0x04, 0x0a, 0x02, 0x1a, 0x00}
	data, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(wire)
	if err != nil {
		t.Fatal(err)
	}
	what := lentRequest{signal: signalLogs, logs: data}
	call := &submitted{}
	size := what.protoSize()
	if size != len(wire) {
		t.Fatalf("pdata sizes the request at %d bytes, not %d", size, len(wire))
	}
	if call.writer.request(make([]byte, size), &what) {
		t.Fatal("the writer took a field it cannot see for written")
	}
	request, err := call.marshal(size, &what)
	if err != nil || !bytes.Equal(request, wire) {
		t.Fatalf("marshalled %x (%v), want pdata's %x", request, err, wire)
	}
	// Longer than the buffer: stopped at its start, not a panic.
	what = lentRequest{signal: signalLogs, logs: logs(3, "short")}
	if call.writer.request(make([]byte, what.protoSize()-1), &what) {
		t.Fatal("a request longer than its buffer was taken for written")
	}
}

func TestACallMarshalsIntoTheBufferItKeeps(t *testing.T) {
	call := &submitted{}
	what := lentRequest{signal: signalLogs, logs: logs(100, "kept")}
	size := what.protoSize()
	first, err := call.marshal(size, &what)
	if err != nil {
		t.Fatal(err)
	}
	allocations := testing.AllocsPerRun(20, func() {
		again, err := call.marshal(size, &what)
		if err != nil || &again[0] != &first[0] {
			t.Fatalf("marshalled elsewhere (%v)", err)
		}
	})
	if allocations != 0 {
		t.Fatalf("%v allocations a request, want none", allocations)
	}
	if len(call.writer.entries) != 0 || call.writer.buf != nil {
		t.Fatal("the writer holds on to the request it wrote")
	}
	// Beyond keptBuffer, a buffer of its own, not kept.
	big := lentRequest{signal: signalLogs, logs: logs(1, string(make([]byte, keptBuffer)))}
	request, err := call.marshal(big.protoSize(), &big)
	if err != nil || &request[0] == &first[0] || cap(call.buf) != cap(first) {
		t.Fatalf("a request over %d bytes: kept %d bytes (%v)", keptBuffer, cap(call.buf), err)
	}
}
