package otapdf

// The writer's messages of each signal, field by field in the order pdata's generated
// marshallers write them (see marshal.go): each statement writes before what the previous
// one wrote, so the bytes come out as pdata's do.

import (
	"math"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

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
