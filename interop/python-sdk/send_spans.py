"""Sends spans to an OTLP/gRPC endpoint with the OpenTelemetry Python SDK's own exporter, as
an instrumented application does: `send_spans.py <host:port> <token> <spans> <gzip|none>`.

Exit 0 once every span was handed to the exporter and flushed; the exporter logs what the
server refused (the test reads the receiver's counters for that)."""

import sys

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main() -> int:
    endpoint, token, spans, compression = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    exporter = OTLPSpanExporter(
        endpoint=endpoint,
        insecure=True,
        headers=(("authorization", f"Bearer {token}"),),
        compression=grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression,
        timeout=10,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "otap-df-interop"}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_export_batch_size=100, schedule_delay_millis=50)
    )
    tracer = provider.get_tracer("otap-df-interop")
    for number in range(spans):
        with tracer.start_as_current_span(f"span-{number}") as span:
            span.set_attribute("number", number)
    flushed = provider.force_flush(timeout_millis=30_000)
    provider.shutdown()
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
