// Package formatver is how Hearth refuses a persistent format version it
// does not know (docs/upgrading.md): one error type that names the file, its
// version and what to do, and one counter, so that a file written by a newer
// release is never read as empty, skipped or deleted.
package formatver

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A Format is one persistent format: the versions this release reads (the
// current one and the previous one, docs/upgrading.md's two-step rule) and
// the one it writes.
type Format struct {
	Name   string // metric label and error text, e.g. "wal_segment"
	Oldest int    // the oldest version this release reads
	Writes int    // the version this release writes (the newest it reads)
	// Newer says what to do with a newer version, when the default (a file
	// of a newer release: run it again or roll back) does not fit.
	Newer string
}

// The formats of this release. Every one is at version 1: the formats of the
// first release (v0.1.0), read as version 1 without being rewritten.
var (
	WALSegment      = Format{Name: "wal_segment", Oldest: 1, Writes: 1}
	WALRecord       = Format{Name: "wal_record", Oldest: 1, Writes: 1}
	Checkpoint      = Format{Name: "wal_checkpoint", Oldest: 1, Writes: 1}
	Tokens          = Format{Name: "tokens", Oldest: 1, Writes: 1}
	PrepareShutdown = Format{Name: "prepare_shutdown", Oldest: 1, Writes: 1}
	ReplicaProtocol = Format{Name: "replica_protocol", Oldest: 1, Writes: 1,
		Newer: "the peer runs a Hearth release more than one ahead of this one: roll the ring one release at a time (docs/upgrading.md)"}
	BlockMeta    = Format{Name: "block_meta", Oldest: 1, Writes: 1}
	DeletionMark = Format{Name: "deletion_mark", Oldest: 1, Writes: 1}
	BucketIndex  = Format{Name: "bucket_index", Oldest: 1, Writes: 1}
	// Settings and AdhocProfile are the querier's objects in the bucket
	// (<tenant>/settings/*.json, <tenant>/adhoc/<id>/meta.json); a missing
	// version is 1 (what v0.2.0 and older wrote).
	Settings     = Format{Name: "settings", Oldest: 1, Writes: 1}
	AdhocProfile = Format{Name: "adhoc_profile", Oldest: 1, Writes: 1}
	// TenantDeletionMark is <tenant>/markers/tenant-deletion-mark.json
	// (POST /compactor/delete_tenant), new in v0.2.0.
	TenantDeletionMark = Format{Name: "tenant_deletion_mark", Oldest: 1, Writes: 1}
)

// All lists the formats (documentation, the metric's label values).
var All = []Format{WALSegment, WALRecord, Checkpoint, Tokens, PrepareShutdown, ReplicaProtocol, BlockMeta, DeletionMark, BucketIndex, Settings, AdhocProfile, TenantDeletionMark}

// Reads says whether this release reads version v of f.
func (f Format) Reads(v int) bool { return v >= f.Oldest && v <= f.Writes }

// ErrUnsupported is what every *Error wraps (errors.Is).
var ErrUnsupported = errors.New("unsupported format version")

// Error is a file (or a peer's message) in a version this release does not read.
type Error struct {
	Format  Format
	File    string // the file, or the peer and endpoint
	Version int
}

func (e *Error) Error() string {
	what := "it was written by a newer Hearth release: run that release (or a newer one) again, " +
		"or follow the rollback path of docs/upgrading.md; do not delete the file, it holds data"
	if e.Format.Newer != "" {
		what = e.Format.Newer
	}
	if e.Version < e.Format.Oldest {
		what = "it was written by a release too old to read directly: upgrade through the releases " +
			"in between (docs/upgrading.md, supported paths); do not delete the file, it holds data"
	}
	return fmt.Sprintf("%s: %s format version %d is not supported (this release reads versions %d to %d): %s",
		e.File, e.Format.Name, e.Version, e.Format.Oldest, e.Format.Writes, what)
}

func (e *Error) Unwrap() error { return ErrUnsupported }

// Check returns nil when this release reads version v of f, else an *Error
// for file, counted in hearth_unsupported_format_version_total{format}.
func (f Format) Check(file string, v int) error {
	if f.Reads(v) {
		return nil
	}
	refused.WithLabelValues(f.Name).Inc()
	return &Error{Format: f, File: file, Version: v}
}

// refused is process-wide: the formats are read by packages that have no
// registry of their own (a collector may be registered with several).
var refused = func() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_unsupported_format_version_total",
		Help: "Files and peer messages refused because their format version is one this release does not read (docs/upgrading.md).",
	}, []string{"format"})
	for _, f := range All {
		c.WithLabelValues(f.Name)
	}
	return c
}()

// Register registers the counter with reg (an already registered error is ignored).
func Register(reg prometheus.Registerer) {
	if err := reg.Register(refused); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err)
		}
	}
}

// Refused is the counter's value for f (tests).
func Refused(f Format) float64 { return testutil.ToFloat64(refused.WithLabelValues(f.Name)) }
