package ring

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	dstls "github.com/grafana/dskit/crypto/tls"

	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// Config is the whole ring configuration: this ingester's place in the ring
// (YAML `ingester.ring`) and the gossip membership that carries it (YAML
// `memberlist`). The two halves live in different places of the YAML file, so
// an application config embeds RingConfig and MemberlistConfig separately and
// builds a Config from them for New.
type Config struct {
	Ring       RingConfig       `yaml:"ring"`
	Memberlist MemberlistConfig `yaml:"memberlist"`
}

// RingConfig places this ingester in the ring (YAML `ingester.ring`).
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

	// ReadinessCheckSelfOnly relaxes Ready: only this instance must be ACTIVE
	// and heartbeating, instead of every member of the ring (dskit's
	// readiness_check_ring_health=false). Not a flag: set it from code when
	// ingesters are started in order and a member that is down would otherwise
	// keep the next one from ever becoming ready.
	ReadinessCheckSelfOnly bool `yaml:"-"`
}

// MemberlistConfig is the gossip membership (YAML `memberlist`).
type MemberlistConfig struct {
	JoinMembers   StringList `yaml:"join_members"`
	BindAddr      string     `yaml:"bind_addr"`
	BindPort      int        `yaml:"bind_port"`
	AdvertiseAddr string     `yaml:"advertise_addr"`
	// AdvertisePort 0 means BindPort.
	AdvertisePort int `yaml:"advertise_port"`
	// TLSEnabled gossips over dskit's TLS transport with TLS (the
	// -memberlist.tls-* flags): the certificate is presented both ways and
	// the peer's verified against the CA.
	TLSEnabled bool `yaml:"tls_enabled"`
	// TLSAcceptPlain serves plain gossip next to TLS on the memberlist port
	// (front.go). dskit's TLS transport does not authenticate the connecting
	// side, so this gives no one access they lacked; it lets peers that dial
	// plain (TLSDialPlain, or TLS off) in during the switch.
	TLSAcceptPlain bool `yaml:"tls_accept_plain"`
	// TLSDialPlain dials peers over plain TCP while serving TLS too (needs
	// TLSAcceptPlain): the middle step of turning TLS on or off.
	TLSDialPlain bool               `yaml:"tls_dial_plain"`
	TLS          dstls.ClientConfig `yaml:",inline"`
}

// StringList is a repeatable flag; in YAML a plain list of strings.
type StringList []string

// String implements flag.Value.
func (s *StringList) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

// Set implements flag.Value: every use of the flag appends one member.
func (s *StringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// RegisterFlags registers the -ingester.ring.* and -memberlist.* flags with
// their defaults.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	c.Ring.RegisterFlags(f)
	c.Memberlist.RegisterFlags(f)
}

// RegisterFlags registers the -ingester.ring.* flags with their defaults.
func (r *RingConfig) RegisterFlags(f *flag.FlagSet) {
	host, _ := os.Hostname()
	f.StringVar(&r.InstanceID, "ingester.ring.instance-id", host, "Ring member name (the pod name in Kubernetes).")
	f.StringVar(&r.InstanceAddr, "ingester.ring.instance-addr", "127.0.0.1", "Address advertised in the ring (the pod IP); the ring address is this host and the HTTP port.")
	f.StringVar(&r.InstanceZone, "ingester.ring.instance-zone", "", "Availability zone of this ingester.")
	f.BoolVar(&r.ZoneAwarenessEnabled, "ingester.ring.zone-awareness-enabled", false, "Place the replicas of a series in distinct zones.")
	f.IntVar(&r.ReplicationFactor, "ingester.ring.replication-factor", 3, "Owners per series (clamped to the ring size).")
	f.IntVar(&r.NumTokens, "ingester.ring.num-tokens", 128, "Tokens per ingester.")
	f.StringVar(&r.TokensFilePath, "ingester.ring.tokens-file-path", "", "Tokens file kept across restarts (default <data-dir>/tokens).")
	f.DurationVar(&r.HeartbeatPeriod, "ingester.ring.heartbeat-period", 5*time.Second, "Ring heartbeat period.")
	f.DurationVar(&r.HeartbeatTimeout, "ingester.ring.heartbeat-timeout", time.Minute, "A member is UNHEALTHY after this long without a heartbeat.")
	f.DurationVar(&r.MinReadyDuration, "ingester.ring.min-ready-duration", 15*time.Second, "At most how long the ring must look healthy, with this ingester ACTIVE, before it reports ready: it reports ready sooner once every other member has it ACTIVE in its ring (asked over the internal listener).")
}

// RegisterFlags registers the -memberlist.* flags with their defaults.
func (m *MemberlistConfig) RegisterFlags(f *flag.FlagSet) {
	f.Var(&m.JoinMembers, "memberlist.join", "Peer to join, host:port. Repeatable. A DNS name resolves to all its addresses; dns+name:port and dnssrv+name also work.")
	f.StringVar(&m.BindAddr, "memberlist.bind-addr", "127.0.0.1", "Memberlist bind address.")
	f.IntVar(&m.BindPort, "memberlist.bind-port", 7946, "Memberlist bind port.")
	f.StringVar(&m.AdvertiseAddr, "memberlist.advertise-addr", "127.0.0.1", "Memberlist address advertised to peers (the pod IP).")
	f.IntVar(&m.AdvertisePort, "memberlist.advertise-port", 0, "Memberlist port advertised to peers (0: the bind port).")
	f.BoolVar(&m.TLSEnabled, "memberlist.tls-enabled", false, "Gossip over TLS (dskit's memberlist TLS transport), with -memberlist.tls-cert-path, -key-path, -ca-path and -server-name.")
	f.BoolVar(&m.TLSAcceptPlain, "memberlist.tls-accept-plain", false, "With -memberlist.tls-enabled: accept plain-TCP gossip connections on the memberlist port too (dskit's TLS transport does not authenticate the dialing side, so this opens nothing new); peers that dial plain reach this one while TLS is turned on or off.")
	f.BoolVar(&m.TLSDialPlain, "memberlist.tls-dial-plain", false, "With -memberlist.tls-enabled and -memberlist.tls-accept-plain: dial peers over plain TCP while serving both; the middle step of turning TLS on or off.")
	m.TLS.RegisterFlagsWithPrefix("memberlist", f)
}

// Validate checks what flags cannot. It never fills in an interface address:
// every address must be given explicitly.
func (c *Config) Validate() error {
	r, m := &c.Ring, &c.Memberlist
	var errs []error
	if r.InstanceID == "" {
		errs = append(errs, errors.New("ingester.ring.instance-id must be set"))
	}
	if r.InstanceAddr == "" {
		errs = append(errs, errors.New("ingester.ring.instance-addr must be set"))
	}
	if r.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("ingester.ring.replication-factor %d must be at least 1", r.ReplicationFactor))
	}
	if r.NumTokens < 1 {
		errs = append(errs, fmt.Errorf("ingester.ring.num-tokens %d must be at least 1", r.NumTokens))
	}
	if r.HeartbeatPeriod <= 0 {
		errs = append(errs, errors.New("ingester.ring.heartbeat-period must be positive"))
	}
	if r.HeartbeatTimeout <= r.HeartbeatPeriod {
		errs = append(errs, fmt.Errorf("ingester.ring.heartbeat-timeout %v must be longer than the heartbeat period %v", r.HeartbeatTimeout, r.HeartbeatPeriod))
	}
	if r.MinReadyDuration < 0 {
		errs = append(errs, errors.New("ingester.ring.min-ready-duration must not be negative"))
	}
	if m.BindAddr == "" {
		errs = append(errs, errors.New("memberlist.bind-addr must be set"))
	} else if net.ParseIP(m.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("memberlist.bind-addr %q is not an IP address", m.BindAddr))
	}
	if m.AdvertiseAddr == "" {
		errs = append(errs, errors.New("memberlist.advertise-addr must be set"))
	} else if net.ParseIP(m.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("memberlist.advertise-addr %q is not an IP address", m.AdvertiseAddr))
	}
	if m.BindPort < 1 || m.BindPort > 65535 {
		errs = append(errs, fmt.Errorf("memberlist.bind-port %d is not a port", m.BindPort))
	}
	if m.AdvertisePort < 0 || m.AdvertisePort > 65535 {
		errs = append(errs, fmt.Errorf("memberlist.advertise-port %d is not a port", m.AdvertisePort))
	}
	if m.TLSEnabled {
		if m.TLS.CertPath == "" || m.TLS.KeyPath == "" {
			errs = append(errs, errors.New("memberlist.tls-enabled needs memberlist.tls-cert-path and memberlist.tls-key-path: the listener serves that certificate"))
		} else if err := tlsreload.ValidateOptions(m.TLS); err != nil {
			errs = append(errs, fmt.Errorf("memberlist TLS: %w", err))
		}
	} else if m.TLSAcceptPlain || m.TLSDialPlain {
		errs = append(errs, errors.New("memberlist.tls-accept-plain and memberlist.tls-dial-plain need memberlist.tls-enabled"))
	}
	if m.TLSDialPlain && !m.TLSAcceptPlain {
		errs = append(errs, errors.New("memberlist.tls-dial-plain needs memberlist.tls-accept-plain (peers dialling TLS must still get in)"))
	}
	return errors.Join(errs...)
}

// tokensPath is the tokens file: the configured one, else <data-dir>/tokens.
func (r *RingConfig) tokensPath(dataDir string) string {
	if r.TokensFilePath != "" {
		return r.TokensFilePath
	}
	return filepath.Join(dataDir, "tokens")
}
