package otapdf

// The engine's metrics as the component's own: each collection of the Collector's telemetry
// reads them from otap-df (node record counts and counters, extension counters and gauges)
// and reports them through the component's MeterProvider.

/*
#include "../include/otapdf_bridge.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// meterScope names the instrumentation scope of the reported metrics.
const meterScope = "github.com/otap-df/collector-bridge/otapdf"

// engineMetrics is what otapdf_metrics reports.
type engineMetrics struct {
	Nodes []struct {
		Pipeline       string           `json:"pipeline"`
		Node           string           `json:"node"`
		RecordsIn      int64            `json:"records_in"`
		RecordsOut     int64            `json:"records_out"`
		RecordsDropped int64            `json:"records_dropped"`
		RecordsFailed  int64            `json:"records_failed"`
		Errors         int64            `json:"errors"`
		Counters       map[string]int64 `json:"counters"`
	} `json:"nodes"`
	Extensions []struct {
		Pipeline  string           `json:"pipeline"`
		Extension string           `json:"extension"`
		Core      *int             `json:"core"`
		Counters  map[string]int64 `json:"counters"`
		Gauges    map[string]int64 `json:"gauges"`
	} `json:"extensions"`
}

// readMetrics asks component `id`'s engine for its metrics; false when it no longer runs.
func readMetrics(id uint64) (*engineMetrics, bool) {
	text, ok := takeString(C.otapdf_metrics(C.uint64_t(id)))
	if !ok {
		return nil, false
	}
	var read engineMetrics
	if err := json.Unmarshal([]byte(text), &read); err != nil {
		return nil, false
	}
	return &read, true
}

// with is `base` and one attribute more, in a slice of its own.
func with(base []attribute.KeyValue, more ...attribute.KeyValue) metric.MeasurementOption {
	all := make([]attribute.KeyValue, 0, len(base)+len(more))
	return metric.WithAttributes(append(append(all, base...), more...)...)
}

// reportMetrics registers component `id`'s engine metrics with `meters`; unregister the
// result when the component stops.
//
//   - otapdf.node.records{pipeline, node, outcome: in|out|dropped|failed}
//   - otapdf.node.errors{pipeline, node}
//   - otapdf.node.counter{pipeline, node, name}: each node's own counters
//   - otapdf.extension.counter{pipeline, extension, core?, name}
//   - otapdf.extension.gauge{pipeline, extension, core?, name}
func reportMetrics(meters metric.MeterProvider, id uint64) (metric.Registration, error) {
	meter := meters.Meter(meterScope)
	records, err := meter.Int64ObservableCounter("otapdf.node.records",
		metric.WithDescription("Records through each otap-df node of the component, by outcome (in, out, dropped, failed)"),
		metric.WithUnit("{record}"))
	if err != nil {
		return nil, err
	}
	errorCount, err := meter.Int64ObservableCounter("otapdf.node.errors",
		metric.WithDescription("Errors each otap-df node handled without losing data"))
	if err != nil {
		return nil, err
	}
	nodeCounters, err := meter.Int64ObservableCounter("otapdf.node.counter",
		metric.WithDescription("Each otap-df node's own counters (requests, accepted, refusals, ...), by name"))
	if err != nil {
		return nil, err
	}
	extensionCounters, err := meter.Int64ObservableCounter("otapdf.extension.counter",
		metric.WithDescription("Each otap-df extension's counters, by name"))
	if err != nil {
		return nil, err
	}
	extensionGauges, err := meter.Int64ObservableGauge("otapdf.extension.gauge",
		metric.WithDescription("Each otap-df extension's gauges, by name"))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(_ context.Context, observer metric.Observer) error {
		read, ok := readMetrics(id)
		if !ok {
			return nil
		}
		for _, node := range read.Nodes {
			base := []attribute.KeyValue{
				attribute.String("pipeline", node.Pipeline),
				attribute.String("node", node.Node),
			}
			for _, outcome := range []struct {
				name  string
				value int64
			}{
				{"in", node.RecordsIn}, {"out", node.RecordsOut},
				{"dropped", node.RecordsDropped}, {"failed", node.RecordsFailed},
			} {
				observer.ObserveInt64(records, outcome.value, with(base, attribute.String("outcome", outcome.name)))
			}
			observer.ObserveInt64(errorCount, node.Errors, with(base))
			for name, value := range node.Counters {
				observer.ObserveInt64(nodeCounters, value, with(base, attribute.String("name", name)))
			}
		}
		for _, extension := range read.Extensions {
			base := []attribute.KeyValue{
				attribute.String("pipeline", extension.Pipeline),
				attribute.String("extension", extension.Extension),
			}
			if extension.Core != nil {
				base = append(base, attribute.String("core", strconv.Itoa(*extension.Core)))
			}
			for name, value := range extension.Counters {
				observer.ObserveInt64(extensionCounters, value, with(base, attribute.String("name", name)))
			}
			for name, value := range extension.Gauges {
				observer.ObserveInt64(extensionGauges, value, with(base, attribute.String("name", name)))
			}
		}
		return nil
	}, records, errorCount, nodeCounters, extensionCounters, extensionGauges)
}
