package otapdf

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// Config is an otap-df pipeline fragment: the extensions its nodes bind, the nodes, how
// they connect (optional with a single processor), and how the bridge runs it.
type Config struct {
	Extensions  map[string]any `mapstructure:"extensions" json:"extensions,omitempty"`
	Nodes       map[string]any `mapstructure:"nodes" json:"nodes,omitempty"`
	Connections []any          `mapstructure:"connections" json:"connections,omitempty"`
	// Cores is how many pipeline instances (threads) run the fragment (default: the
	// `runtime: rust: executor: cores` of the Collector's configuration, else 1).
	Cores int `mapstructure:"cores" json:"cores,omitempty"`
	// QueueSize bounds the payloads waiting between the runtimes, each way (default: the
	// `runtime: rust: otapdf: queue_size` of the Collector's configuration, else 256): past
	// it, the Collector's side gets a retryable error.
	QueueSize int `mapstructure:"queue_size" json:"queue_size,omitempty"`

	role int
}

func defaultConfig(role int) component.CreateDefaultConfigFunc {
	return func() component.Config { return &Config{role: role} }
}

// Validate checks the fragment with otap-df: the errors name the field inside it
// (`at nodes.dedup.config.ttl: ...`).
func (c *Config) Validate() error {
	return validate(c.role, c.withDefaults())
}

// bridged is one component: an otap-df engine, the Collector's next consumers per signal.
type bridged struct {
	role   int
	config *Config
	logger *zap.Logger
	// meters is the component's MeterProvider: the engine's metrics are reported through it
	// (nil: not reported).
	meters   metric.MeterProvider
	reported metric.Registration
	mu       sync.Mutex
	id       uint64
	handle   uint64
	logs     consumer.Logs
	traces   consumer.Traces
	metrics  consumer.Metrics
	// users counts the Collector components sharing this one (a receiver serves every
	// signal's pipeline from one engine: one listening socket).
	users   int
	started int
	host    component.Host
}

func (b *bridged) Start(_ context.Context, host component.Host) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started++
	if b.started > 1 {
		return nil
	}
	b.host = host
	b.handle = registerOutlet(b)
	config := b.config.withDefaults()
	id, err := start(b.role, config, b.handle)
	if err != nil {
		forgetOutlet(b.handle)
		b.handle = 0
		return err
	}
	b.id = id
	if b.meters != nil {
		reported, err := reportMetrics(b.meters, id)
		if err != nil {
			b.logger.Warn("the otap-df engine's metrics are not reported", zap.Error(err))
		}
		b.reported = reported
	}
	b.logger.Info("otap-df engine started", zap.Uint64("engine", id),
		zap.Int("cores", config.Cores), zap.Int("queue_size", config.QueueSize),
		zap.String("library", LinkedLibrary))
	return nil
}

func (b *bridged) Shutdown(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started == 0 {
		return nil
	}
	b.started--
	if b.started > 0 {
		return nil
	}
	id := b.id
	b.id = 0
	if b.reported != nil {
		_ = b.reported.Unregister()
		b.reported = nil
	}
	err := error(nil)
	if id != 0 {
		err = stop(id)
		b.logger.Info("otap-df engine stopped", zap.Uint64("engine", id), zap.Error(err))
	}
	if b.handle != 0 {
		forgetOutlet(b.handle)
		b.handle = 0
	}
	return err
}

func (b *bridged) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

func (b *bridged) running() (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.id == 0 {
		return 0, errors.New("the otapdf component is not running")
	}
	return b.id, nil
}

func (b *bridged) ConsumeLogs(ctx context.Context, data plog.Logs) error {
	id, err := b.running()
	if err != nil {
		return err
	}
	return consume(ctx, id, signalLogs, data.LogRecordCount(), lentRequest{logs: data}, b.lends())
}

func (b *bridged) ConsumeTraces(ctx context.Context, data ptrace.Traces) error {
	id, err := b.running()
	if err != nil {
		return err
	}
	return consume(ctx, id, signalTraces, data.SpanCount(), lentRequest{traces: data}, b.lends())
}

func (b *bridged) ConsumeMetrics(ctx context.Context, data pmetric.Metrics) error {
	id, err := b.running()
	if err != nil {
		return err
	}
	return consume(ctx, id, signalMetrics, data.DataPointCount(), lentRequest{metrics: data}, b.lends())
}

// lends says whether what the component is given can come back out of it, to be handed
// on as the Collector's own data (see original).
func (b *bridged) lends() bool {
	return b.role == roleProcessor || b.role == roleConnector
}

// original is the Collector's data `request` was marshalled from and its call's context,
// when it is a request lent to otap-df whose call still runs, coming back out unchanged
// (the same bytes, whole): it is handed on as it came in, with the context it came with
// (client.Info whole: metadata, address, auth), as a Collector processor that keeps data
// hands it on.
func original(request []byte) (lentRequest, bool) {
	if len(request) == 0 {
		return lentRequest{}, false
	}
	lent.mu.Lock()
	defer lent.mu.Unlock()
	slot, ok := lent.by[uintptr(unsafe.Pointer(&request[0]))]
	if !ok {
		return lentRequest{}, false
	}
	entry := calls.at(slot).lent
	if entry.size != len(request) {
		return lentRequest{}, false
	}
	return entry, true
}

// handedOn is what a delivery is handed to the next consumer with: the Collector's data it
// was made from (ok false: unmarshal the request), and a context whose client.Info says who
// sent it — the original call's for a lent request, else one made from the identity otap-df
// gave (its subject and attributes as the Auth, what headers_setter's from_attribute
// reads), else none.
func handedOn(request []byte, sender []byte) (lentRequest, bool, context.Context) {
	if entry, ok := original(request); ok {
		return entry, true, entry.ctx
	}
	if len(sender) > 0 {
		if who, err := parseIdentity(string(sender)); err == nil {
			return lentRequest{}, false, client.NewContext(context.Background(), client.Info{Auth: who})
		}
	}
	return lentRequest{}, false, context.Background()
}

// ended reports the component's engine's end to the Collector: a permanent error in its
// status (health checks see it) and the log; what it is given meanwhile is refused,
// retryable.
func (b *bridged) ended(why string) {
	err := fmt.Errorf("the otap-df engine ended: %s", why)
	b.logger.Error("otap-df engine ended by itself", zap.Error(err))
	b.mu.Lock()
	host := b.host
	b.mu.Unlock()
	if host != nil {
		componentstatus.ReportStatus(host, componentstatus.NewPermanentErrorEvent(err))
	}
}

// deliver hands what the engine's outlet gives to the next consumer of its signal.
func (b *bridged) deliver(signal int, request []byte, sender []byte, done func(error)) error {
	known, ok, ctx := handedOn(request, sender)
	// The data it was made from, when it comes back as the signal it went in as.
	ok = ok && known.signal == signal
	switch signal {
	case signalLogs:
		if b.logs == nil {
			return consumererror.NewPermanent(errors.New("no Collector logs pipeline takes this component's output"))
		}
		data := known.logs
		if !ok {
			var err error
			if data, err = (&plog.ProtoUnmarshaler{}).UnmarshalLogs(request); err != nil {
				return consumererror.NewPermanent(err)
			}
		}
		go func() { done(b.logs.ConsumeLogs(ctx, data)) }()
	case signalTraces:
		if b.traces == nil {
			return consumererror.NewPermanent(errors.New("no Collector traces pipeline takes this component's output"))
		}
		data := known.traces
		if !ok {
			var err error
			if data, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(request); err != nil {
				return consumererror.NewPermanent(err)
			}
		}
		go func() { done(b.traces.ConsumeTraces(ctx, data)) }()
	case signalMetrics:
		if b.metrics == nil {
			return consumererror.NewPermanent(errors.New("no Collector metrics pipeline takes this component's output"))
		}
		data := known.metrics
		if !ok {
			var err error
			if data, err = (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(request); err != nil {
				return consumererror.NewPermanent(err)
			}
		}
		go func() { done(b.metrics.ConsumeMetrics(ctx, data)) }()
	default:
		return consumererror.NewPermanent(fmt.Errorf("unknown signal %d", signal))
	}
	return nil
}

// A receiver's engine serves every signal's pipeline that names it (one listening socket):
// the Collector creates it once per signal with the same ID.
var (
	receiversMu sync.Mutex
	receivers   = map[component.ID]*bridged{}
)

func sharedReceiver(set receiver.Settings, cfg component.Config) *bridged {
	receiversMu.Lock()
	defer receiversMu.Unlock()
	shared, ok := receivers[set.ID]
	if !ok {
		shared = &bridged{role: roleReceiver, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider}
		receivers[set.ID] = shared
	}
	shared.users++
	return shared
}

// sharedUse is one signal's use of a shared receiver: the last Shutdown forgets it.
type sharedUse struct {
	*bridged
	id component.ID
}

func (u sharedUse) Shutdown(ctx context.Context) error {
	err := u.bridged.Shutdown(ctx)
	receiversMu.Lock()
	defer receiversMu.Unlock()
	u.users--
	if u.users == 0 && receivers[u.id] == u.bridged {
		delete(receivers, u.id)
	}
	return err
}

// NewReceiverFactory is the factory of `receivers: otapdf/<name>`: otap-df receivers (and
// processors after them) whose output the Collector's pipelines take.
func NewReceiverFactory() receiver.Factory {
	return receiver.NewFactory(Type, defaultConfig(roleReceiver),
		receiver.WithLogs(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
			shared := sharedReceiver(set, cfg)
			shared.logs = next
			return sharedUse{shared, set.ID}, nil
		}, component.StabilityLevelAlpha),
		receiver.WithTraces(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
			shared := sharedReceiver(set, cfg)
			shared.traces = next
			return sharedUse{shared, set.ID}, nil
		}, component.StabilityLevelAlpha),
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			shared := sharedReceiver(set, cfg)
			shared.metrics = next
			return sharedUse{shared, set.ID}, nil
		}, component.StabilityLevelAlpha),
	)
}

// NewProcessorFactory is the factory of `processors: otapdf/<name>`: otap-df processors in a
// Collector pipeline.
func NewProcessorFactory() processor.Factory {
	return processor.NewFactory(Type, defaultConfig(roleProcessor),
		processor.WithLogs(func(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Logs) (processor.Logs, error) {
			return &bridged{role: roleProcessor, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider, logs: next}, nil
		}, component.StabilityLevelAlpha),
		processor.WithTraces(func(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
			return &bridged{role: roleProcessor, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider, traces: next}, nil
		}, component.StabilityLevelAlpha),
		processor.WithMetrics(func(_ context.Context, set processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
			return &bridged{role: roleProcessor, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider, metrics: next}, nil
		}, component.StabilityLevelAlpha),
	)
}

// NewExporterFactory is the factory of `exporters: otapdf/<name>`: otap-df exporters (and
// processors before them) at the end of a Collector pipeline.
func NewExporterFactory() exporter.Factory {
	create := func(set exporter.Settings, cfg component.Config) *bridged {
		return &bridged{role: roleExporter, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider}
	}
	return exporter.NewFactory(Type, defaultConfig(roleExporter),
		exporter.WithLogs(func(_ context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
			return create(set, cfg), nil
		}, component.StabilityLevelAlpha),
		exporter.WithTraces(func(_ context.Context, set exporter.Settings, cfg component.Config) (exporter.Traces, error) {
			return create(set, cfg), nil
		}, component.StabilityLevelAlpha),
		exporter.WithMetrics(func(_ context.Context, set exporter.Settings, cfg component.Config) (exporter.Metrics, error) {
			return create(set, cfg), nil
		}, component.StabilityLevelAlpha),
	)
}

// NewConnectorFactory is the factory of `connectors: otapdf/<name>`: otap-df processors
// between two Collector pipelines of the same signal.
func NewConnectorFactory() connector.Factory {
	return connector.NewFactory(Type, defaultConfig(roleConnector),
		connector.WithLogsToLogs(func(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Logs) (connector.Logs, error) {
			return &bridged{role: roleConnector, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider, logs: next}, nil
		}, component.StabilityLevelAlpha),
		connector.WithTracesToTraces(func(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Traces) (connector.Traces, error) {
			return &bridged{role: roleConnector, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider, traces: next}, nil
		}, component.StabilityLevelAlpha),
		connector.WithMetricsToMetrics(func(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Metrics, error) {
			return &bridged{role: roleConnector, config: cfg.(*Config), logger: set.Logger, meters: set.MeterProvider, metrics: next}, nil
		}, component.StabilityLevelAlpha),
	)
}
