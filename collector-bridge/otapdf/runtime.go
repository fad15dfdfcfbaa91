package otapdf

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/collector/confmap"
)

// LinkedLibrary names the otap-df library (libotap_df_collector_bridge.a) this binary links:
// its content hash, which the build sets (`-ldflags=-X
// github.com/otap-df/collector-bridge/otapdf.LinkedLibrary=<hash>`; `cargo xtask` does).
// Go's build cache does not look into the C libraries a package links, so a binary built
// again after only the library changed is the cached one, linking the old library; naming
// the library in the link's flags makes a changed library a changed link. Each component's
// start log says it.
var LinkedLibrary = "unnamed"

// RuntimeConfig is the Collector configuration's `runtime: rust:` section: what every otapdf
// component runs with unless its own configuration says otherwise.
type RuntimeConfig struct {
	// Executor: how the engines run.
	Executor ExecutorConfig `mapstructure:"executor"`
	// Otapdf: the bridge between the runtimes.
	Otapdf BridgeConfig `mapstructure:"otapdf"`
}

// ExecutorConfig is `runtime: rust: executor:`.
type ExecutorConfig struct {
	// Cores is how many pipeline instances (threads) each component's engine runs (1–256;
	// default 1).
	Cores int `mapstructure:"cores"`
}

// BridgeConfig is `runtime: rust: otapdf:`.
type BridgeConfig struct {
	// QueueSize bounds every queue between the runtimes, per component (1–65536; default 256).
	QueueSize int `mapstructure:"queue_size"`
}

// runtimeDefaults is the section the configuration last resolved had (a reload resolves it
// again).
var runtimeDefaults atomic.Pointer[RuntimeConfig]

// NewRuntimeConverterFactory reads the `runtime:` section out of the Collector's
// configuration before the Collector sees it (it knows no such section) and keeps it as the
// otapdf components' defaults. A distribution adds it to its resolver's
// `ConverterFactories`.
func NewRuntimeConverterFactory() confmap.ConverterFactory {
	return confmap.NewConverterFactory(func(confmap.ConverterSettings) confmap.Converter {
		return runtimeConverter{}
	})
}

type runtimeConverter struct{}

func (runtimeConverter) Convert(_ context.Context, conf *confmap.Conf) error {
	settings := &RuntimeConfig{}
	if conf.IsSet("runtime") {
		section, err := conf.Sub("runtime")
		if err != nil {
			return fmt.Errorf("runtime: %w", err)
		}
		var runtime struct {
			Rust RuntimeConfig `mapstructure:"rust"`
		}
		if err := section.Unmarshal(&runtime); err != nil {
			return fmt.Errorf("runtime: %w", err)
		}
		settings = &runtime.Rust
		if cores := settings.Executor.Cores; cores < 0 || cores > 256 {
			return fmt.Errorf("runtime::rust::executor::cores: must be from 1 to 256 (or left out for 1), not %d", cores)
		}
		if size := settings.Otapdf.QueueSize; size < 0 || size > 65536 {
			return fmt.Errorf("runtime::rust::otapdf::queue_size: must be from 1 to 65536 (or left out for 256), not %d", size)
		}
		conf.Delete("runtime")
	}
	runtimeDefaults.Store(settings)
	return nil
}

// withDefaults is the component's configuration with the runtime section's defaults where
// it sets none.
func (c *Config) withDefaults() *Config {
	defaults := runtimeDefaults.Load()
	if defaults == nil {
		return c
	}
	effective := *c
	if effective.Cores == 0 {
		effective.Cores = defaults.Executor.Cores
	}
	if effective.QueueSize == 0 {
		effective.QueueSize = defaults.Otapdf.QueueSize
	}
	return &effective
}
