// Package validation checks pushed profiles against the configured limits
// before anything is stored. Every violation names the limit and the value.
package validation

import (
	"flag"
	"fmt"
	"time"
	"unicode/utf8"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
)

// Limits are the per-tenant bounds on what a push may contain.
type Limits struct {
	MaxProfileSizeBytes    int           `yaml:"max_profile_size_bytes"`
	MaxLabelNamesPerSeries int           `yaml:"max_label_names_per_series"`
	MaxLabelNameLength     int           `yaml:"max_label_name_length"`
	MaxLabelValueLength    int           `yaml:"max_label_value_length"`
	MaxSamplesPerProfile   int           `yaml:"max_profile_stacktrace_samples"`
	MaxStackDepth          int           `yaml:"max_profile_stacktrace_depth"`
	MaxSymbolValueLength   int           `yaml:"max_profile_symbol_value_length"`
	RejectOlderThan        time.Duration `yaml:"reject_older_than"`
	CreationGracePeriod    time.Duration `yaml:"creation_grace_period"`
	MaxSeriesPerTenant     int           `yaml:"max_series_per_tenant"`
	IngestionRateMB        float64       `yaml:"ingestion_rate_mb"`
	IngestionBurstSizeMB   float64       `yaml:"ingestion_burst_size_mb"`

	// Query limits (Pyroscope's names).
	MaxQueryLength            time.Duration `yaml:"max_query_length"`
	MaxQueryLookback          time.Duration `yaml:"max_query_lookback"`
	MaxFlameGraphNodesDefault int           `yaml:"max_flamegraph_nodes_default"`
	MaxFlameGraphNodesMax     int           `yaml:"max_flamegraph_nodes_max"`
	// Per-query caps (Mimir's names): bytes read from block files and
	// distinct series touched.
	MaxFetchedBytesPerQuery  int `yaml:"max_fetched_bytes_per_query"`
	MaxFetchedSeriesPerQuery int `yaml:"max_fetched_series_per_query"`

	// RetentionPeriod is the tenant's block retention in the bucket (0:
	// forever). Its default is -compactor.blocks-retention-period.
	RetentionPeriod time.Duration `yaml:"compactor_blocks_retention_period"`

	// DistributorUsageGroups names parts of the tenant's data by series
	// selector, for the usage metrics (Pyroscope's distributor_usage_groups;
	// YAML only: the config file's limits or the runtime overrides).
	DistributorUsageGroups *UsageGroups `yaml:"distributor_usage_groups,omitempty"`
}

// RegisterFlags registers the limits' flags with their defaults.
func (l *Limits) RegisterFlags(f *flag.FlagSet) {
	f.IntVar(&l.MaxProfileSizeBytes, "limits.max-profile-size-bytes", 16<<20, "Largest decompressed profile accepted, in bytes.")
	f.IntVar(&l.MaxLabelNamesPerSeries, "limits.max-label-names-per-series", 30, "Most labels a series may carry.")
	f.IntVar(&l.MaxLabelNameLength, "limits.max-label-name-length", 1024, "Longest label name.")
	f.IntVar(&l.MaxLabelValueLength, "limits.max-label-value-length", 2048, "Longest label value.")
	f.IntVar(&l.MaxSamplesPerProfile, "limits.max-profile-stacktrace-samples", 64000, "Most samples in one profile.")
	f.IntVar(&l.MaxStackDepth, "limits.max-profile-stacktrace-depth", 1000, "Deepest stack trace (locations) in a profile.")
	f.IntVar(&l.MaxSymbolValueLength, "limits.max-profile-symbol-value-length", 65535, "Longest string (function or file name) in a profile.")
	f.DurationVar(&l.RejectOlderThan, "limits.reject-older-than", time.Hour, "Reject profiles older than this (0: accept any age).")
	f.DurationVar(&l.CreationGracePeriod, "limits.creation-grace-period", 10*time.Minute, "Reject profiles more than this far in the future.")
	f.IntVar(&l.MaxSeriesPerTenant, "limits.max-series-per-tenant", 100000, "Most active series a tenant may have in the head (0: unlimited).")
	f.Float64Var(&l.IngestionRateMB, "limits.ingestion-rate-mb", 0, "Per-tenant ingestion rate in MB/s of compressed profiles (0: unlimited).")
	f.Float64Var(&l.IngestionBurstSizeMB, "limits.ingestion-burst-size-mb", 64, "Per-tenant ingestion burst size in MB.")
	f.DurationVar(&l.MaxQueryLength, "querier.max-query-length", 24*time.Hour, "Longest time range a query may cover, after -querier.max-query-lookback has moved its start (0: unlimited).")
	f.DurationVar(&l.MaxQueryLookback, "querier.max-query-lookback", 7*24*time.Hour, "How far back a query may read: an earlier start is moved up to it, a query entirely before it answers nothing (0: unlimited).")
	f.IntVar(&l.MaxFlameGraphNodesDefault, "querier.max-flamegraph-nodes-default", 8<<10, "Flame graph nodes when a query asks for none (max_nodes 0) (0: unlimited).")
	f.IntVar(&l.MaxFlameGraphNodesMax, "querier.max-flamegraph-nodes-max", 1<<20, "Most flame graph nodes a query may ask for (0: unlimited).")
	f.IntVar(&l.MaxFetchedBytesPerQuery, "querier.max-fetched-bytes-per-query", 512<<20, "Most bytes one query may read from block files (the bucket's and this ingester's); more is refused with 400 naming the limit (0: unlimited).")
	f.IntVar(&l.MaxFetchedSeriesPerQuery, "querier.max-fetched-series-per-query", 100000, "Most distinct series one query may touch; more is refused with 400 naming the limit (0: unlimited).")
}

// Reason names a kind of violation: the reason label of the discarded
// metrics. Where Pyroscope has the same refusal, the value is Pyroscope's,
// so its dashboards and alerts read Hearth's metrics.
type Reason string

const (
	ProfileTooLarge   Reason = "profile_size_limit"
	BodyTooLarge      Reason = "body_size_limit_exceeded"
	TooManyLabels     Reason = "max_label_names_per_series"
	LabelNameTooLong  Reason = "label_name_too_long"
	LabelValueTooLong Reason = "label_value_too_long"
	InvalidLabelName  Reason = "invalid_labels"
	InvalidLabelValue Reason = "invalid_labels"
	DuplicateLabel    Reason = "duplicate_label_names"
	TooManySamples    Reason = "samples_limit"
	TooOld            Reason = "not_in_ingestion_window"
	TooNew            Reason = "not_in_ingestion_window"
	InvalidProfile    Reason = "malformed_profile"
	SeriesLimit       Reason = "series_limit"
	RateLimited       Reason = "rate_limited"
	// Hearth's own: Pyroscope truncates deep stacks and long symbols, and
	// has no format to refuse.
	StackTooDeep      Reason = "stack_too_deep"
	SymbolTooLong     Reason = "symbol_too_long"
	UnsupportedFormat Reason = "unsupported_format"
)

// Error is a limit violation: a client error, never stored.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// ValidLabelName reports whether n is a Prometheus-style label name.
func ValidLabelName(n string) bool {
	if n == "" {
		return false
	}
	for i, c := range n {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case (c >= '0' && c <= '9') || c == '.':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Labels checks a sorted label set.
func (l *Limits) Labels(ls model.Labels) error {
	if l.MaxLabelNamesPerSeries > 0 && len(ls) > l.MaxLabelNamesPerSeries {
		return errorf(TooManyLabels, "series %s has %d labels, more than the limit of %d (limits.max-label-names-per-series)", ls, len(ls), l.MaxLabelNamesPerSeries)
	}
	for i, lb := range ls {
		if !ValidLabelName(lb.Name) {
			return errorf(InvalidLabelName, "label name %q is invalid: it must match [a-zA-Z_][a-zA-Z0-9_.]*", lb.Name)
		}
		if l.MaxLabelNameLength > 0 && len(lb.Name) > l.MaxLabelNameLength {
			return errorf(LabelNameTooLong, "label name %.64q... is %d bytes, longer than the limit of %d (limits.max-label-name-length)", lb.Name, len(lb.Name), l.MaxLabelNameLength)
		}
		if l.MaxLabelValueLength > 0 && len(lb.Value) > l.MaxLabelValueLength {
			return errorf(LabelValueTooLong, "value of label %q is %d bytes, longer than the limit of %d (limits.max-label-value-length)", lb.Name, len(lb.Value), l.MaxLabelValueLength)
		}
		if !utf8.ValidString(lb.Value) {
			return errorf(InvalidLabelValue, "value of label %q is not valid UTF-8", lb.Name)
		}
		if i > 0 && ls[i-1].Name == lb.Name {
			return errorf(DuplicateLabel, "label %q appears more than once", lb.Name)
		}
	}
	return nil
}

// Profile checks a decoded profile's size, shape and time (nanoseconds).
func (l *Limits) Profile(p *googlev1.Profile, timeNanos int64, now time.Time) error {
	if l.MaxSamplesPerProfile > 0 && len(p.Sample) > l.MaxSamplesPerProfile {
		return errorf(TooManySamples, "profile has %d samples, more than the limit of %d (limits.max-profile-stacktrace-samples)", len(p.Sample), l.MaxSamplesPerProfile)
	}
	if len(p.SampleType) == 0 {
		return errorf(InvalidProfile, "profile has no sample types")
	}
	for i, s := range p.Sample {
		if l.MaxStackDepth > 0 && len(s.LocationId) > l.MaxStackDepth {
			return errorf(StackTooDeep, "sample %d has a stack of %d locations, deeper than the limit of %d (limits.max-profile-stacktrace-depth)", i, len(s.LocationId), l.MaxStackDepth)
		}
		if len(s.Value) != len(p.SampleType) {
			return errorf(InvalidProfile, "sample %d has %d values, the profile has %d sample types", i, len(s.Value), len(p.SampleType))
		}
	}
	if len(p.StringTable) == 0 || p.StringTable[0] != "" {
		return errorf(InvalidProfile, "the string table must start with the empty string")
	}
	for i, s := range p.StringTable {
		if l.MaxSymbolValueLength > 0 && len(s) > l.MaxSymbolValueLength {
			return errorf(SymbolTooLong, "string %d of the profile is %d bytes, longer than the limit of %d (limits.max-profile-symbol-value-length)", i, len(s), l.MaxSymbolValueLength)
		}
	}
	t := time.Unix(0, timeNanos)
	if l.RejectOlderThan > 0 && t.Before(now.Add(-l.RejectOlderThan)) {
		return errorf(TooOld, "profile time %s is older than the limit of %s before now (limits.reject-older-than)", t.UTC().Format(time.RFC3339), l.RejectOlderThan)
	}
	if l.CreationGracePeriod > 0 && t.After(now.Add(l.CreationGracePeriod)) {
		return errorf(TooNew, "profile time %s is more than %s in the future (limits.creation-grace-period)", t.UTC().Format(time.RFC3339), l.CreationGracePeriod)
	}
	return nil
}
