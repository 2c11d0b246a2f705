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

	"go.yaml.in/yaml/v3"

	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/ingester/wal"
)

// Config is the whole ingester configuration (docs/configuration.md).
type Config struct {
	Server     ServerConfig      `yaml:"server"`
	DataDir    string            `yaml:"data_dir"`
	Auth       AuthConfig        `yaml:"auth"`
	Log        LogConfig         `yaml:"log"`
	Ingester   IngesterConfig    `yaml:"ingester"`
	Memberlist MemberlistConfig  `yaml:"memberlist"`
	WAL        WALConfig         `yaml:"wal"`
	Storage    bucket.Config     `yaml:"storage"`
	Limits     validation.Limits `yaml:"limits"`
}

// ServerConfig is the HTTP listener.
type ServerConfig struct {
	HTTPListenAddress string `yaml:"http_listen_address"`
	HTTPListenPort    int    `yaml:"http_listen_port"`
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

// RingConfig places this ingester in the ring.
type RingConfig struct {
	InstanceID           string        `yaml:"instance_id"`
	InstanceAddr         string        `yaml:"instance_addr"`
	InstanceZone         string        `yaml:"instance_zone"`
	ZoneAwarenessEnabled bool          `yaml:"zone_awareness_enabled"`
	ReplicationFactor    int           `yaml:"replication_factor"`
	NumTokens            int           `yaml:"num_tokens"`
	TokensFilePath       string        `yaml:"tokens_file_path"`
	HeartbeatPeriod      time.Duration `yaml:"heartbeat_period"`
	HeartbeatTimeout     time.Duration `yaml:"heartbeat_timeout"`
	MinReadyDuration     time.Duration `yaml:"min_ready_duration"`
}

// IngesterConfig is the head, block and ring settings.
type IngesterConfig struct {
	Ring             RingConfig    `yaml:"ring"`
	MaxBlockDuration time.Duration `yaml:"max_block_duration"`
	MaxHeadBytes     int64         `yaml:"max_head_bytes"`
	LocalRetention   time.Duration `yaml:"local_retention"`

	MaxPendingUploadBytes int64 `yaml:"max_pending_upload_bytes"`
}

// MemberlistConfig is the gossip membership.
type MemberlistConfig struct {
	JoinMembers   stringList `yaml:"join_members"`
	BindAddr      string     `yaml:"bind_addr"`
	BindPort      int        `yaml:"bind_port"`
	AdvertiseAddr string     `yaml:"advertise_addr"`
}

// WALConfig is the write-ahead log.
type WALConfig struct {
	Fsync wal.Policy `yaml:"fsync"`
}

type stringList []string

func (s *stringList) String() string { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// RegisterFlags registers every flag with its default.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Server.HTTPListenAddress, "server.http-listen-address", "", "HTTP listen address (empty: all interfaces).")
	f.IntVar(&c.Server.HTTPListenPort, "server.http-listen-port", 4040, "HTTP listen port: push, query, /ingest, /metrics.")
	f.StringVar(&c.DataDir, "data-dir", "./data", "Directory for the WAL, local blocks, the tokens file and markers.")
	f.BoolVar(&c.Auth.MultitenancyEnabled, "auth.multitenancy-enabled", false, "Require the X-Scope-OrgID header; when off every request is tenant \"anonymous\".")
	f.StringVar(&c.Log.Level, "log.level", "info", "Log level: debug, info, warn, error.")
	f.StringVar(&c.Log.Format, "log.format", "logfmt", "Log format: logfmt or json.")
	host, _ := os.Hostname()
	r := &c.Ingester.Ring
	f.StringVar(&r.InstanceID, "ingester.ring.instance-id", host, "Ring member name (the pod name in Kubernetes).")
	f.StringVar(&r.InstanceAddr, "ingester.ring.instance-addr", "127.0.0.1", "Address advertised in the ring (the pod IP).")
	f.StringVar(&r.InstanceZone, "ingester.ring.instance-zone", "", "Availability zone of this ingester.")
	f.BoolVar(&r.ZoneAwarenessEnabled, "ingester.ring.zone-awareness-enabled", false, "Place the replicas of a series in distinct zones.")
	f.IntVar(&r.ReplicationFactor, "ingester.ring.replication-factor", 3, "Owners per series.")
	f.IntVar(&r.NumTokens, "ingester.ring.num-tokens", 128, "Tokens per ingester.")
	f.StringVar(&r.TokensFilePath, "ingester.ring.tokens-file-path", "", "Tokens file (default <data-dir>/tokens).")
	f.DurationVar(&r.HeartbeatPeriod, "ingester.ring.heartbeat-period", 5*time.Second, "Ring heartbeat period.")
	f.DurationVar(&r.HeartbeatTimeout, "ingester.ring.heartbeat-timeout", time.Minute, "A member is UNHEALTHY after this long without a heartbeat.")
	f.DurationVar(&r.MinReadyDuration, "ingester.ring.min-ready-duration", 15*time.Second, "How long to stay ACTIVE before reporting ready.")
	f.DurationVar(&c.Ingester.MaxBlockDuration, "ingester.max-block-duration", time.Hour, "Cut the head into a block when it is older than this.")
	f.Int64Var(&c.Ingester.MaxHeadBytes, "ingester.max-head-bytes", 1<<30, "Cut the head into a block when it holds more than this many bytes.")
	f.DurationVar(&c.Ingester.LocalRetention, "ingester.local-retention", 6*time.Hour, "Keep uploaded blocks on local disk this long.")
	f.Var(&c.Memberlist.JoinMembers, "memberlist.join", "Peer to join (host:port; DNS names resolve to all addresses). Repeatable.")
	f.StringVar(&c.Memberlist.BindAddr, "memberlist.bind-addr", "127.0.0.1", "Memberlist bind address.")
	f.IntVar(&c.Memberlist.BindPort, "memberlist.bind-port", 7946, "Memberlist bind port.")
	f.StringVar(&c.Memberlist.AdvertiseAddr, "memberlist.advertise-addr", "127.0.0.1", "Memberlist advertise address.")
	c.WAL.Fsync = wal.PolicyAlways
	f.Var(&c.WAL.Fsync, "wal.fsync", "WAL fsync policy: always (group commit), interval, off.")
	f.Int64Var(&c.Ingester.MaxPendingUploadBytes, "ingester.max-pending-upload-bytes", 10<<30, "Refuse writes (503) while more than this many bytes of blocks wait for upload, e.g. while the bucket is down (0: no limit).")
	c.Storage.RegisterFlags(f)
	c.Limits.RegisterFlags(f)
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
	if c.DataDir == "" {
		return errors.New("data-dir must be set")
	}
	if c.Storage.Backend == "filesystem" && c.Storage.Filesystem.Dir == "" {
		c.Storage.Filesystem.Dir = filepath.Join(c.DataDir, "bucket")
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
