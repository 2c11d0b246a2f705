package app

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/grafana/dskit/runtimeconfig"
	"go.yaml.in/yaml/v3"

	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/ingester/compactor"
	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/ring"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/ingester/wal"
	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// Config is the whole ingester configuration (docs/configuration.md).
type Config struct {
	Server     ServerConfig          `yaml:"server"`
	DataDir    string                `yaml:"data_dir"`
	Auth       AuthConfig            `yaml:"auth"`
	Log        LogConfig             `yaml:"log"`
	Ingester   IngesterConfig        `yaml:"ingester"`
	Memberlist ring.MemberlistConfig `yaml:"memberlist"`
	WAL        WALConfig             `yaml:"wal"`
	Storage    bucket.Config         `yaml:"storage"`
	Limits     validation.Limits     `yaml:"limits"`
	Compactor  compactor.Config      `yaml:"compactor"`
	Normalize  normalize.Config      `yaml:"normalize"`
	Querier    querier.Config        `yaml:"querier"`
	// RuntimeConfig is -runtime-config.*: per-tenant overrides reloaded while running.
	RuntimeConfig runtimeconfig.Config `yaml:"runtime_config"`
	// ShutdownDelay keeps serving after a stop begins (not ready, LEAVING), so
	// that clients and load balancers stop sending here before the port closes.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
}

// ServerConfig is the HTTP listeners: the public one (push, query, /ready,
// /metrics, the read-only ring page) and the internal one (what peers and the
// operator call: replica writes and reads, admin endpoints).
type ServerConfig struct {
	HTTPListenAddress string                 `yaml:"http_listen_address"`
	HTTPListenPort    int                    `yaml:"http_listen_port"`
	HTTPTLS           tlsreload.ServerConfig `yaml:"http_tls"`

	InternalListenAddress string                 `yaml:"internal_listen_address"`
	InternalListenPort    int                    `yaml:"internal_listen_port"`
	InternalTLS           tlsreload.ServerConfig `yaml:"internal_tls"`
}

// AuthConfig controls tenancy.
type AuthConfig struct {
	MultitenancyEnabled bool `yaml:"multitenancy_enabled"`
}

// LogConfig controls logging.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// IngesterConfig is the head, block and ring settings.
type IngesterConfig struct {
	Ring             ring.RingConfig `yaml:"ring"`
	MaxBlockDuration time.Duration   `yaml:"max_block_duration"`
	MaxHeadBytes     ByteSize        `yaml:"max_head_bytes"`
	// FlushOnStopWALBytes: a normal stop writes the head into local blocks when a
	// start would otherwise replay more WAL than this (0: never).
	FlushOnStopWALBytes ByteSize `yaml:"flush_on_stop_wal_bytes"`
	// HeadSnapshotWALBytes: write a head snapshot every this many bytes of
	// WAL, so a crash restart replays at most about that much (0: never).
	HeadSnapshotWALBytes ByteSize      `yaml:"head_snapshot_wal_bytes"`
	LocalRetention       time.Duration `yaml:"local_retention"`

	// Client is how this ingester calls its peers' internal listeners
	// (-ingester.client.tls-*).
	Client tlsreload.ClientConfig `yaml:"client"`

	MaxPendingUploadBytes ByteSize      `yaml:"max_pending_upload_bytes"`
	FinalFlushTimeout     time.Duration `yaml:"final_flush_timeout"`
	// InstanceLimits bound what this ingester takes on (-ingester.instance-limits.*).
	InstanceLimits push.InstanceLimits `yaml:"instance_limits"`
	// LeavePropagationTimeout bounds the wait, on a stop, for the other members to
	// see this one LEAVING before it refuses writes.
	LeavePropagationTimeout time.Duration `yaml:"leave_propagation_timeout"`
}

// WALConfig is the write-ahead log.
type WALConfig struct {
	Fsync wal.Policy `yaml:"fsync"`
}

// RegisterFlags registers every flag with its default.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Server.HTTPListenAddress, "server.http-listen-address", "", "HTTP listen address (empty: all interfaces).")
	f.IntVar(&c.Server.HTTPListenPort, "server.http-listen-port", 4040, "HTTP listen port: push, query, /ingest, /ready, /metrics, the read-only ring page (0 picks a free one).")
	c.Server.HTTPTLS.RegisterFlagsWithPrefix("server.http", f, "public HTTP port")
	f.StringVar(&c.Server.InternalListenAddress, "server.internal-listen-address", "", "Internal listen address: replica writes and reads, admin endpoints (empty: all interfaces).")
	f.IntVar(&c.Server.InternalListenPort, "server.internal-listen-port", 4041, "Internal listen port, advertised in the ring: what peers and the operator call (0 picks a free one).")
	c.Server.InternalTLS.RegisterFlagsWithPrefix("server.internal", f, "internal port")
	c.Ingester.Client.RegisterFlagsWithPrefix("ingester.client", f)
	f.DurationVar(&c.ShutdownDelay, "shutdown-delay", 0, "On a stop, keep serving this long after /ready turns not-ready and the ring says LEAVING (pushes that still arrive are forwarded to the other replicas), so that Service endpoints and load balancers stop sending here before the port closes.")
	f.StringVar(&c.DataDir, "data-dir", "./data", "Directory for the WAL, local blocks, the tokens file and markers.")
	f.BoolVar(&c.Auth.MultitenancyEnabled, "auth.multitenancy-enabled", false, "Require the X-Scope-OrgID header; when off every request is tenant \"anonymous\".")
	f.StringVar(&c.Log.Level, "log.level", "info", "Log level: debug, info, warn, error.")
	f.StringVar(&c.Log.Format, "log.format", "logfmt", "Log format: logfmt or json.")
	c.Ingester.Ring.RegisterFlags(f)
	c.Memberlist.RegisterFlags(f)
	f.DurationVar(&c.Ingester.MaxBlockDuration, "ingester.max-block-duration", time.Hour, "Cut the head into a block when it is older than this.")
	c.Ingester.MaxHeadBytes = 1 << 30
	f.Var(&c.Ingester.MaxHeadBytes, "ingester.max-head-bytes", "Cut the head into a block when it holds more than this (e.g. 512MiB).")
	f.Var(&c.Ingester.FlushOnStopWALBytes, "ingester.flush-on-stop-wal-bytes", "On a normal stop (a restart), write the head into local blocks when the next start would otherwise replay more WAL than this (e.g. 256MiB): writing a head is several times faster than replaying the WAL that built it. 0: never; the stop then takes well under a second.")
	c.Ingester.HeadSnapshotWALBytes = 256 << 20
	f.Var(&c.Ingester.HeadSnapshotWALBytes, "ingester.head-snapshot-wal-bytes", "Write a snapshot of the head every time this much WAL was written since the last one, so that a crash restart loads it and replays only the WAL after it (e.g. 256MiB). 0: never; a crash restart replays the whole WAL not yet in blocks.")
	f.DurationVar(&c.Ingester.LocalRetention, "ingester.local-retention", 6*time.Hour, "Keep uploaded blocks on local disk this long.")
	c.WAL.Fsync = wal.PolicyAlways
	f.Var(&c.WAL.Fsync, "wal.fsync", "WAL fsync policy: always (group commit), interval, off.")
	c.Ingester.MaxPendingUploadBytes = 10 << 30
	f.Var(&c.Ingester.MaxPendingUploadBytes, "ingester.max-pending-upload-bytes", "Refuse writes (503) while more than this of blocks waits for upload, e.g. while the bucket is down (0: no limit).")
	f.DurationVar(&c.Ingester.LeavePropagationTimeout, "ingester.leave-propagation-timeout", 5*time.Second, "On a stop, how long to wait for every other ring member to see this one LEAVING before it stops taking writes (a peer with a stale ring would otherwise send it writes that fail their quorum). 0: do not wait.")
	f.DurationVar(&c.Ingester.FinalFlushTimeout, "ingester.final-flush-timeout", 5*time.Minute, "How long a final stop (scale-down, /ingester/shutdown) may take to flush and upload before it gives up and keeps its WAL and tokens.")
	c.Ingester.InstanceLimits.RegisterFlags(f)
	c.Storage.RegisterFlags(f)
	c.Limits.RegisterFlags(f)
	c.Compactor.RegisterFlags(f)
	c.Normalize.RegisterFlags(f)
	c.Querier.RegisterFlags(f)
	c.RuntimeConfig.RegisterFlags(f)
}

// ParseConfig builds the config: defaults, then the YAML file named by
// -config.file, then the flags given on the command line.
func ParseConfig(name string, args []string) (*Config, *flag.FlagSet, error) {
	cfg := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var file string
	fs.StringVar(&file, "config.file", "", "YAML configuration file (flags given on the command line override it).")
	cfg.RegisterFlags(fs)
	// First pass: only to find -config.file.
	probe := flag.NewFlagSet(name, flag.ContinueOnError)
	probe.SetOutput(discard{})
	probe.StringVar(&file, "config.file", "", "")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config.file" {
			return
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			probe.Var(ignoreBool{}, f.Name, "")
		} else {
			probe.Var(ignoreValue{}, f.Name, "")
		}
	})
	_ = probe.Parse(args) // errors are reported, with usage, by the real parse below
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fs, fmt.Errorf("reading -config.file: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return nil, fs, fmt.Errorf("-config.file %s: %w", file, err)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	if fs.NArg() > 0 {
		return nil, fs, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, fs, cfg.Validate()
}

// Validate checks values that flags cannot.
func (c *Config) Validate() error {
	if c.Server.HTTPListenPort < 0 || c.Server.HTTPListenPort > 65535 {
		return fmt.Errorf("server.http-listen-port %d is not a port", c.Server.HTTPListenPort)
	}
	if c.Server.InternalListenPort < 0 || c.Server.InternalListenPort > 65535 {
		return fmt.Errorf("server.internal-listen-port %d is not a port", c.Server.InternalListenPort)
	}
	if c.Server.InternalListenPort != 0 && c.Server.InternalListenPort == c.Server.HTTPListenPort && c.Server.InternalListenAddress == c.Server.HTTPListenAddress {
		return fmt.Errorf("server.internal-listen-port and server.http-listen-port are both %d: the internal listener needs its own port", c.Server.HTTPListenPort)
	}
	if err := c.Server.HTTPTLS.Validate("-server.http"); err != nil {
		return err
	}
	if err := c.Server.InternalTLS.Validate("-server.internal"); err != nil {
		return err
	}
	if err := c.Ingester.Client.Validate("-ingester.client"); err != nil {
		return err
	}
	if c.DataDir == "" {
		return errors.New("data-dir must be set")
	}
	if c.Storage.Backend == "filesystem" && c.Storage.Filesystem.Dir == "" {
		c.Storage.Filesystem.Dir = filepath.Join(c.DataDir, "bucket")
	}
	if err := (&ring.Config{Ring: c.Ingester.Ring, Memberlist: c.Memberlist}).Validate(); err != nil {
		return err
	}
	if err := c.Compactor.Validate(); err != nil {
		return err
	}
	if err := c.Querier.Validate(); err != nil {
		return err
	}
	if err := c.Ingester.InstanceLimits.Validate(); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if len(c.RuntimeConfig.LoadPath) > 0 && c.RuntimeConfig.ReloadPeriod <= 0 {
		return errors.New("runtime-config.reload-period must be positive")
	}
	return c.Storage.Validate()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// ignoreValue accepts any flag value: the probe parse only looks for -config.file.
type ignoreValue struct{}

func (ignoreValue) String() string   { return "" }
func (ignoreValue) Set(string) error { return nil }

type ignoreBool struct{ ignoreValue }

func (ignoreBool) IsBoolFlag() bool { return true }
