package otapdf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
)

// logs is a batch of `records` log records, distinct through `tag`, shaped as the load
// tool's (one resource, one scope, a body and two attributes a record).
func logs(records int, tag string) plog.Logs {
	data := plog.NewLogs()
	resource := data.ResourceLogs().AppendEmpty()
	resource.Resource().Attributes().PutStr("service.name", "otapdf-bridge-bench")
	scope := resource.ScopeLogs().AppendEmpty()
	scope.Scope().SetName("bench")
	for i := 0; i < records; i++ {
		record := scope.LogRecords().AppendEmpty()
		record.SetTimestamp(1)
		record.Body().SetStr(fmt.Sprintf("%s record %d", tag, i))
		record.Attributes().PutStr("tag", tag)
		record.Attributes().PutInt("index", int64(i))
	}
	return data
}

func startComponent(t testing.TB, role int, config *Config, sink *consumertest.LogsSink) *bridged {
	t.Helper()
	b := &bridged{role: role, config: config, logger: zap.NewNop()}
	if sink != nil {
		b.logs = sink
	}
	if err := b.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return b
}

func dedup() *Config {
	return &Config{
		role: roleProcessor,
		Extensions: map[string]any{
			"seen": map[string]any{"type": "extension:memory_kv"},
		},
		Nodes: map[string]any{
			"dedup": map[string]any{
				"type":         "processor:dedup",
				"capabilities": map[string]any{"key_value_store": "seen"},
			},
		},
	}
}

func TestAProcessorHandsOnWhatItKeepsAndAnswersOnceTheNextConsumerDid(t *testing.T) {
	sink := new(consumertest.LogsSink)
	b := startComponent(t, roleProcessor, dedup(), sink)
	for _, tag := range []string{"a", "b", "a", "c"} {
		if err := b.ConsumeLogs(context.Background(), logs(100, tag)); err != nil {
			t.Fatalf("batch %s: %v", tag, err)
		}
	}
	// Each call returned after the next consumer took what it kept: no waiting here.
	if got := sink.LogRecordCount(); got != 300 {
		t.Fatalf("records handed on: %d, want 300", got)
	}
	if got := len(sink.AllLogs()); got != 3 {
		t.Fatalf("batches handed on: %d, want 3", got)
	}
}

func TestTheNextConsumersErrorsReachTheCallerRetryableOrPermanent(t *testing.T) {
	for _, permanent := range []bool{false, true} {
		err := fmt.Errorf("downstream refused")
		if permanent {
			err = consumererror.NewPermanent(err)
		}
		sink := consumertest.NewErr(err)
		b := &bridged{role: roleProcessor, config: dedup(), logger: zap.NewNop(), logs: sink}
		if err := b.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		got := b.ConsumeLogs(context.Background(), logs(10, fmt.Sprint(permanent)))
		_ = b.Shutdown(context.Background())
		if permanent {
			// Dropped where it was refused for good, as an exporter drops it: accepted here.
			if got != nil {
				t.Fatalf("permanent: %v", got)
			}
		} else if got == nil || consumererror.IsPermanent(got) || !strings.Contains(got.Error(), "downstream refused") {
			t.Fatalf("retryable: %v", got)
		}
	}
}

func TestConfigurationErrorsAreLocatedInsideTheComponent(t *testing.T) {
	config := dedup()
	config.Nodes["dedup"].(map[string]any)["config"] = map[string]any{"ttl": "forever"}
	err := config.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "at `nodes.dedup.config.ttl`: ") {
		t.Fatalf("%v", err)
	}
	if err := (&ExtensionConfig{Type: "bearer_auth", Config: map[string]any{"token": "x"}}).Validate(); err != nil {
		t.Fatalf("%v", err)
	}
}

func TestAStoppedComponentRefusesRetryable(t *testing.T) {
	b := &bridged{role: roleProcessor, config: dedup(), logger: zap.NewNop(), logs: new(consumertest.LogsSink)}
	if err := b.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := b.ConsumeLogs(context.Background(), logs(1, "late"))
	if err == nil || consumererror.IsPermanent(err) {
		t.Fatalf("%v", err)
	}
}

// cpu is the process's CPU time so far (user and system).
func cpu() time.Duration {
	var usage syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// measured runs `op` b.N times (in parallel when `parallel`), reporting the process's CPU
// time per op beside the wall time.
func measured(b *testing.B, parallel bool, op func() error) {
	b.ReportAllocs()
	before := cpu()
	b.ResetTimer()
	if parallel {
		// Callers as a Collector receiver's connections are: many at once.
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for i := 0; i < b.N; i++ {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpu()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// The Collector's own work for a batch of 100 records: what crossing costs is measured
// beyond it.
func BenchmarkMarshalLogs100(b *testing.B) {
	data := logs(100, "bench")
	marshaler := &plog.ProtoMarshaler{}
	measured(b, false, func() error {
		_, err := marshaler.MarshalLogs(data)
		return err
	})
}

// The same batch as our components marshal it: into the buffer the call keeps.
func BenchmarkMarshalLogs100IntoKeptBuffer(b *testing.B) {
	call := &submitted{}
	what := lentRequest{signal: signalLogs, logs: logs(100, "bench")}
	measured(b, false, func() error {
		_, err := call.marshal(what.protoSize(), &what)
		return err
	})
}

func BenchmarkUnmarshalLogs100(b *testing.B) {
	request, _ := (&plog.ProtoMarshaler{}).MarshalLogs(logs(100, "bench"))
	unmarshaler := &plog.ProtoUnmarshaler{}
	measured(b, false, func() error {
		_, err := unmarshaler.UnmarshalLogs(request)
		return err
	})
}

func benchIntoRust(b *testing.B, parallel bool) {
	sink := map[string]any{"sink": map[string]any{"type": "exporter:noop"}}
	c := startComponent(b, roleExporter, &Config{role: roleExporter, Nodes: sink}, nil)
	data := logs(100, "bench")
	measured(b, parallel, func() error { return c.ConsumeLogs(context.Background(), data) })
}

// Go → Rust: marshal, the call, the engine's core takes it (exporter:noop), the answer.
func BenchmarkGoToRust(b *testing.B)         { benchIntoRust(b, false) }
func BenchmarkGoToRustParallel(b *testing.B) { benchIntoRust(b, true) }

func benchThroughRust(b *testing.B, parallel bool) {
	c := startComponent(b, roleProcessor, &Config{role: roleProcessor}, nil)
	c.logs = consumertest.NewNop()
	data := logs(100, "bench")
	measured(b, parallel, func() error { return c.ConsumeLogs(context.Background(), data) })
}

// Go → Rust → Go: the above, then the outlet's callback, unmarshal, the next consumer on a
// goroutine, its answer back to Rust, and Rust's answer to the caller.
func BenchmarkGoToRustToGo(b *testing.B)         { benchThroughRust(b, false) }
func BenchmarkGoToRustToGoParallel(b *testing.B) { benchThroughRust(b, true) }

func TestACallEndsOnceAnsweredAndReleasedInEitherOrder(t *testing.T) {
	for _, releaseFirst := range []bool{false, true} {
		before := calls.pending()
		call := calls.take()
		buffer := make([]byte, 8)
		call.pinner.Pin(&buffer[0])
		token := call.token()
		call.settled(!releaseFirst, releaseFirst)
		if found, ok := calls.find(token); !ok || found != call {
			t.Fatalf("release first %v: forgotten after one of two", releaseFirst)
		}
		call.settled(releaseFirst, !releaseFirst)
		// Settled; still the call's until it took its outcome.
		if _, ok := calls.find(token); !ok || calls.pending() != before+1 {
			t.Fatalf("release first %v: given back before its call let go", releaseFirst)
		}
		call.letGo()
		if _, ok := calls.find(token); ok {
			t.Fatalf("release first %v: its token still names it once over", releaseFirst)
		}
		if calls.pending() != before {
			t.Fatalf("release first %v: %d calls pending, want %d", releaseFirst, calls.pending(), before)
		}
		// Reused by the next call, under another token.
		again := calls.take()
		if again != call || again.token() == token {
			t.Fatalf("release first %v: not reused, or reused under the same token", releaseFirst)
		}
		again.holds.Store(1)
		again.letGo()
	}
}

func TestTheRuntimeSectionIsTakenOutAndSetsTheComponentsDefaults(t *testing.T) {
	defer runtimeDefaults.Store(nil)
	converter := runtimeConverter{}
	conf := confmap.NewFromStringMap(map[string]any{
		"runtime": map[string]any{"rust": map[string]any{
			"executor": map[string]any{"cores": 2},
			"otapdf":   map[string]any{"queue_size": 32},
		}},
		"receivers": map[string]any{"otlp": nil},
	})
	if err := converter.Convert(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	if conf.IsSet("runtime") || !conf.IsSet("receivers") {
		t.Fatalf("the runtime section stays or more went: %v", conf.ToStringMap())
	}
	effective := (&Config{QueueSize: 8}).withDefaults()
	if effective.Cores != 2 || effective.QueueSize != 8 {
		t.Fatalf("defaults: %+v", effective)
	}
	for section, want := range map[string]string{
		`{"executor": {"cores": 1000}}`:  "runtime::rust::executor::cores: must be from 1 to 256",
		`{"otapdf": {"queue_size": -1}}`: "runtime::rust::otapdf::queue_size: must be from 1 to 65536",
		`{"executr": {"cores": 1}}`:      "executr",
	} {
		var rust map[string]any
		if err := json.Unmarshal([]byte(section), &rust); err != nil {
			t.Fatal(err)
		}
		bad := confmap.NewFromStringMap(map[string]any{"runtime": map[string]any{"rust": rust}})
		err := converter.Convert(context.Background(), bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v", section, err)
		}
	}
}

// reporter is a Collector host that keeps the status events reported to it.
type reporter struct {
	component.Host
	events []*componentstatus.Event
}

func (r *reporter) Report(event *componentstatus.Event) { r.events = append(r.events, event) }

func TestAnEngineThatEndedByItselfIsAPermanentErrorInTheComponentsStatus(t *testing.T) {
	host := &reporter{Host: componenttest.NewNopHost()}
	b := &bridged{role: roleProcessor, config: dedup(), logger: zap.NewNop(), host: host}
	b.ended("a node failed")
	if len(host.events) != 1 || host.events[0].Status() != componentstatus.StatusPermanentError ||
		!strings.Contains(host.events[0].Err().Error(), "a node failed") {
		t.Fatalf("%+v", host.events)
	}
}

func TestBytesAnExporterStillHoldsAreUnpinnedWhenItLetsGo(t *testing.T) {
	// An exporter whose upstream is not there keeps the payload, retrying: the call is
	// answered as it takes it; the bytes stay pinned until it lets go (here: at shutdown).
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + listener.Addr().String()
	listener.Close()
	config := &Config{role: roleExporter, Nodes: map[string]any{
		"up": map[string]any{"type": "exporter:otlp_http", "config": map[string]any{"endpoint": endpoint}},
	}}
	b := &bridged{role: roleExporter, config: config, logger: zap.NewNop()}
	if err := b.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := b.ConsumeLogs(context.Background(), logs(10, "held")); err != nil {
		t.Fatal(err)
	}
	if pending := calls.pending(); pending != 1 {
		t.Fatalf("calls waiting for their bytes: %d, want 1", pending)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending := calls.pending()
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bytes were never released: %d calls pinned", pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An authorizer's identity reaches the Collector's client.Info with its attributes: an
// `oidc_auth` extension (its key set served here, the token signed here with ES256) reads the
// tenant and the groups from the token's claims.
func TestAnAuthorizersIdentityAndItsAttributesReachTheClientInfo(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	coordinate := func(n *big.Int) string { return b64(n.FillBytes(make([]byte, 32))) }
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
		"x": coordinate(key.PublicKey.X), "y": coordinate(key.PublicKey.Y),
	}}})
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write(jwks)
	}))
	defer server.Close()
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": "k1", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss": "https://issuer.test", "aud": "otap-df", "sub": "svc-a", "tenant": "acme",
		"groups": []string{"writers", "ops"}, "exp": time.Now().Add(time.Hour).Unix(),
	})
	input := b64(header) + "." + b64(claims)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	token := input + "." + b64(append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...))

	ext := &authExtension{config: &ExtensionConfig{Type: "oidc_auth", Config: map[string]any{
		"issuer": "https://issuer.test", "jwks_url": server.URL, "audience": "otap-df",
		"algorithms": []string{"ES256"},
		"attributes": map[string]string{"tenant": "tenant", "groups": "groups"},
	}}}
	if err := ext.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer func() { _ = ext.Shutdown(context.Background()) }()
	ctx, err := ext.Authenticate(context.Background(), map[string][]string{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	auth := client.FromContext(ctx).Auth
	if got := auth.GetAttribute("subject"); got != "svc-a" {
		t.Errorf("subject: %v", got)
	}
	if got := auth.GetAttribute("tenant"); got != "acme" {
		t.Errorf("tenant: %v", got)
	}
	if got, ok := auth.GetAttribute("groups").([]string); !ok || len(got) != 2 || got[0] != "writers" || got[1] != "ops" {
		t.Errorf("groups: %v", auth.GetAttribute("groups"))
	}
	if got := auth.GetAttributeNames(); len(got) != 4 {
		t.Errorf("attribute names: %v", got)
	}
	if _, err := ext.Authenticate(context.Background(), map[string][]string{"Authorization": {"Bearer " + token + "x"}}); err == nil {
		t.Error("a tampered token was accepted")
	}
}

func TestTheEnginesMetricsAreTheComponentsOwnTelemetry(t *testing.T) {
	telemetry := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = telemetry.Shutdown(context.Background()) })
	sink := new(consumertest.LogsSink)
	b := &bridged{role: roleProcessor, config: dedup(), logger: zap.NewNop(),
		meters: telemetry.NewTelemetrySettings().MeterProvider, logs: sink}
	if err := b.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start: %v", err)
	}
	for _, tag := range []string{"a", "b", "a", "c", "b"} {
		if err := b.ConsumeLogs(context.Background(), logs(100, tag)); err != nil {
			t.Fatalf("batch %s: %v", tag, err)
		}
	}
	records, err := telemetry.GetMetric("otapdf.node.records")
	if err != nil {
		t.Fatalf("otapdf.node.records: %v", err)
	}
	sum, ok := records.Data.(metricdata.Sum[int64])
	if !ok || !sum.IsMonotonic {
		t.Fatalf("otapdf.node.records is not a monotonic sum: %#v", records.Data)
	}
	got := map[string]int64{}
	for _, point := range sum.DataPoints {
		node, _ := point.Attributes.Value("node")
		outcome, _ := point.Attributes.Value("outcome")
		if node.AsString() == "dedup" {
			got[outcome.AsString()] = point.Value
		}
	}
	want := map[string]int64{"in": 500, "out": 300, "dropped": 200, "failed": 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the dedup node's records: %v, want %v", got, want)
	}
	if _, err := telemetry.GetMetric("otapdf.extension.counter"); err != nil {
		t.Fatalf("otapdf.extension.counter (memory_kv's evictions): %v", err)
	}
	// Stopped: the component's metrics are no longer reported.
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := telemetry.GetMetric("otapdf.node.records"); err == nil {
		t.Fatalf("otapdf.node.records still reported after the component stopped")
	}
}

// contexts is a next consumer that keeps the context of each call.
type contexts struct {
	mu   sync.Mutex
	seen []context.Context
}

func (c *contexts) consumer(t *testing.T) consumer.Logs {
	next, err := consumer.NewLogs(func(ctx context.Context, _ plog.Logs) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.seen = append(c.seen, ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func (c *contexts) infos() []client.Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	infos := make([]client.Info, 0, len(c.seen))
	for _, ctx := range c.seen {
		infos = append(infos, client.FromContext(ctx))
	}
	return infos
}

func TestTheCallersClientInfoCrossesAProcessorAndAnIdentityComesBackOut(t *testing.T) {
	next := &contexts{}
	b := &bridged{role: roleProcessor, config: dedup(), logger: zap.NewNop(), logs: next.consumer(t)}
	if err := b.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	caller, err := parseIdentity(`{"subject":"svc-a","attributes":[["tenant","acme"],["groups","ops"],["groups","dev"]]}`)
	if err != nil {
		t.Fatal(err)
	}
	ctx := client.NewContext(context.Background(), client.Info{
		Auth:     caller,
		Metadata: client.NewMetadata(map[string][]string{"x-request-source": {"edge-7"}}),
	})
	// The identity crosses in: our nodes see it (as its JSON shows, what the Rust side reads).
	if got := string(senderOf(ctx)); got != `{"subject":"svc-a","attributes":[["tenant","acme"],["groups","ops"],["groups","dev"]]}` {
		t.Fatalf("the sender as otap-df reads it: %s", got)
	}
	if err := b.ConsumeLogs(ctx, logs(10, "from-acme")); err != nil {
		t.Fatalf("consume: %v", err)
	}
	// Handed on unchanged: with the call's own context, client.Info whole.
	infos := next.infos()
	if len(infos) != 1 {
		t.Fatalf("calls of the next consumer: %d, want 1", len(infos))
	}
	if got := infos[0].Metadata.Get("x-request-source"); fmt.Sprint(got) != "[edge-7]" {
		t.Fatalf("metadata handed on: %v", got)
	}
	if got := infos[0].Auth.GetAttribute("tenant"); got != "acme" {
		t.Fatalf("tenant handed on: %v", got)
	}

	// A payload our nodes made (not the caller's bytes): its client.Info is made from the
	// identity otap-df gives with it, each attribute readable as the Collector reads them.
	request, err := (&plog.ProtoMarshaler{}).MarshalLogs(logs(3, "made-here"))
	if err != nil {
		t.Fatal(err)
	}
	outcome := make(chan error, 1)
	sender := []byte(`{"subject":"svc-b","attributes":[["tenant","globex"],["groups","ops"],["groups","dev"]]}`)
	if err := b.deliver(signalLogs, request, sender, func(err error) { outcome <- err }); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if err := <-outcome; err != nil {
		t.Fatalf("next consumer: %v", err)
	}
	made := next.infos()[1].Auth
	if made == nil || made.GetAttribute("subject") != "svc-b" || made.GetAttribute("tenant") != "globex" ||
		fmt.Sprint(made.GetAttribute("groups")) != "[ops dev]" {
		t.Fatalf("client.Info.Auth made from the identity: %#v", made)
	}
	// And one without a sender: no Auth.
	if err := b.deliver(signalLogs, request, nil, func(err error) { outcome <- err }); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	<-outcome
	if auth := next.infos()[2].Auth; auth != nil {
		t.Fatalf("no sender, yet an Auth: %#v", auth)
	}
}

// basicAuth stands in for the Collector's basicauth extension's AuthData.
type basicAuth struct{}

func (basicAuth) GetAttribute(name string) any {
	if name == "username" {
		return "alice"
	}
	return nil
}
func (basicAuth) GetAttributeNames() []string { return []string{"username", "raw"} }

func TestAnotherAuthenticatorsCallerCrossesByItsUsername(t *testing.T) {
	ctx := client.NewContext(context.Background(), client.Info{Auth: basicAuth{}})
	if got := string(senderOf(ctx)); got != `{"subject":"alice","attributes":[["username","alice"]]}` {
		t.Fatalf("the sender as otap-df reads it: %s", got)
	}
	if sender := senderOf(context.Background()); sender != nil {
		t.Fatalf("a call without Auth has no sender: %s", sender)
	}
}
