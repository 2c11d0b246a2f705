package wal

import (
	"fmt"
	"strings"
)

// Policy is the fsync policy of a WAL. The zero value is PolicyAlways.
// It implements flag.Value (and encoding.TextMarshaler/TextUnmarshaler), so
// it can be registered directly, e.g. flag.Var(&opts.Policy, "wal.fsync", ...).
type Policy int

const (
	// PolicyAlways acknowledges an Append only after the record has been
	// written and fsynced. Concurrent appends share one write+fsync (group
	// commit). Nothing acknowledged is lost on process crash, kernel crash
	// or power loss (given a disk that honours fsync).
	PolicyAlways Policy = iota
	// PolicyInterval acknowledges an Append once the record has been written
	// to the file (the OS page cache), and fsyncs every Options.SyncInterval.
	// A process crash (kill -9, OOM, panic) loses nothing acknowledged; a
	// kernel crash or power loss may lose up to one interval of
	// acknowledged records.
	PolicyInterval
	// PolicyOff never fsyncs (benchmarks only). A process crash loses
	// nothing acknowledged; a kernel crash or power loss may lose anything
	// the kernel had not yet written back (typically up to ~30 s).
	PolicyOff
)

var policyNames = [...]string{"always", "interval", "off"}

// ParsePolicy parses "always", "interval" or "off" (case-insensitive).
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("invalid wal fsync policy %q (want always, interval or off)", s)
}

// String returns the flag spelling of p.
func (p Policy) String() string {
	if p >= 0 && int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Set implements flag.Value.
func (p *Policy) Set(s string) error {
	v, err := ParsePolicy(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (p Policy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Policy) UnmarshalText(b []byte) error { return p.Set(string(b)) }
