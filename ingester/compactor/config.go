package compactor

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Config is the compactor's configuration (YAML section `compactor`).
type Config struct {
	Enabled bool `yaml:"enabled"`
	// BlockRanges are the levels' range sizes.
	BlockRanges DurationList `yaml:"block_ranges"`
	// CompactionInterval is how often the compactor looks at the bucket.
	CompactionInterval time.Duration `yaml:"compaction_interval"`
	// FirstLevelWait: a range is compacted only once its end is this far in the
	// past, so that every replica's block of it could have arrived.
	FirstLevelWait time.Duration `yaml:"first_level_compaction_wait_period"`
	// DeletionDelay: a block marked for deletion is deleted this long after the mark.
	DeletionDelay time.Duration `yaml:"deletion_delay"`
	// RetentionPeriod: blocks whose newest profile is older than this are
	// deleted (0: keep forever).
	RetentionPeriod time.Duration `yaml:"blocks_retention_period"`
	// TenantRetention overrides RetentionPeriod per tenant (0: keep forever).
	TenantRetention TenantDurations `yaml:"tenant_retention_periods"`
	// JobTimeout bounds one job (download, merge, upload).
	JobTimeout time.Duration `yaml:"job_timeout"`
	// RetentionFor, when set, gives a tenant's retention from the runtime
	// overrides (ok false: none set for it); it wins over TenantRetention.
	RetentionFor func(tenant string) (d time.Duration, ok bool) `yaml:"-"`
	// AbandonedUploadGrace: an ingester's partial upload (no meta.json) whose
	// newest object is older than this is deleted: its ingester never came back.
	AbandonedUploadGrace time.Duration `yaml:"abandoned_upload_grace"`
	// TenantShardSize: a tenant's jobs and upkeep go to this many ingesters
	// (its shard, picked by shuffle sharding); the others read nothing of
	// the tenant. 0: every ingester.
	TenantShardSize int `yaml:"tenant_shard_size"`
	// TenantCleanupDelay: a tenant deletion is finished (its mark gets its
	// finished time and the tenant may push again) only once nothing but the
	// mark is left and this long has passed since the request, so that every
	// ingester dropped the tenant and no upload of it is still on its way.
	TenantCleanupDelay time.Duration `yaml:"tenant_cleanup_delay"`
}

// PartialGrace is how old (by its ULID) a compactor's block without meta.json
// must be to be a crashed job's leftover: a job uploads within JobTimeout of
// its start, before which its output's ULID is not made; twice that, and at
// least an hour, leaves a margin for clock skew between instances.
func (c *Config) PartialGrace() time.Duration {
	return max(time.Hour, 2*c.JobTimeout)
}

// DefaultBlockRanges: the first level matches the ingesters' default 1h cut
// (-ingester.max-block-duration), so that an ingester's block overlaps at most
// two first-level ranges; 4h then 24h: a week is 7 blocks per tenant, a month 30.
var DefaultBlockRanges = DurationList{time.Hour, 4 * time.Hour, 24 * time.Hour}

// RegisterFlags registers the -compactor.* flags.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.BoolVar(&c.Enabled, "compactor.enabled", true, "Run the compactor inside the ingester: jobs are spread over the ingesters by the ring (one owner per job).")
	c.BlockRanges = append(DurationList(nil), DefaultBlockRanges...)
	f.Var(&c.BlockRanges, "compactor.block-ranges", "Comma-separated compaction levels' range sizes, ascending, each a multiple of the one before (e.g. 1h,4h,24h). Level 1 merges the ingesters' blocks (every replica's) of a range into one block.")
	f.DurationVar(&c.CompactionInterval, "compactor.compaction-interval", 5*time.Minute, "How often the compactor plans and runs jobs, marks and deletes blocks and writes the bucket index.")
	f.DurationVar(&c.FirstLevelWait, "compactor.first-level-compaction-wait-period", 70*time.Minute, "A range is compacted only once its end is this far in the past, so that every replica's block of it has arrived: keep it above -ingester.max-block-duration plus the upload time. A block that arrives later is merged in by another job.")
	f.DurationVar(&c.DeletionDelay, "compactor.deletion-delay", 2*time.Hour, "Delete a block this long after its deletion mark (queries that listed it before may still read it meanwhile).")
	f.DurationVar(&c.RetentionPeriod, "compactor.blocks-retention-period", 0, "Delete blocks whose newest profile is older than this (0: keep forever).")
	f.Var(&c.TenantRetention, "compactor.tenant-retention-periods", "Per-tenant overrides of -compactor.blocks-retention-period: tenant=duration,... (0: keep forever).")
	f.DurationVar(&c.JobTimeout, "compactor.job-timeout", 30*time.Minute, "Give up a compaction job (download, merge, upload) after this long; it is retried at the next interval. A compactor's upload without meta.json is deleted after twice this (at least 1h).")
	f.IntVar(&c.TenantShardSize, "compactor.tenant-shard-size", 3, "Compact each tenant on this many ingesters (its shard, picked from the ring by shuffle sharding, as Mimir's compactor tenant shard): its jobs are spread over them, and the other ingesters read nothing of the tenant (no index, listing or marks). 0: every ingester.")
	f.DurationVar(&c.TenantCleanupDelay, "compactor.tenant-cleanup-delay", 6*time.Hour, "A tenant deletion (POST /compactor/delete_tenant) finishes once nothing of the tenant is left in the bucket and this long has passed since the request: until then its pushes are refused and anything of it that still arrives (a late upload) is deleted. Keep it above the longest an ingester may be down.")
	f.DurationVar(&c.AbandonedUploadGrace, "compactor.abandoned-upload-grace", 7*24*time.Hour, "Delete an ingester's partial upload (a block directory without meta.json) once nothing was written to it for this long: its ingester never came back to finish it.")
}

// Validate checks the ranges and durations.
func (c *Config) Validate() error {
	if len(c.BlockRanges) == 0 {
		return errors.New("compactor.block-ranges: at least one range")
	}
	for i, d := range c.BlockRanges {
		if d <= 0 || d%time.Second != 0 {
			return fmt.Errorf("compactor.block-ranges: %s is not a positive whole number of seconds", d)
		}
		if i > 0 && (d <= c.BlockRanges[i-1] || d%c.BlockRanges[i-1] != 0) {
			return fmt.Errorf("compactor.block-ranges: %s is not a larger multiple of %s", d, c.BlockRanges[i-1])
		}
	}
	if c.CompactionInterval <= 0 {
		return errors.New("compactor.compaction-interval must be positive")
	}
	if c.FirstLevelWait < 0 || c.DeletionDelay < 0 || c.RetentionPeriod < 0 || c.TenantCleanupDelay < 0 {
		return errors.New("compactor: negative wait period, deletion delay, retention or tenant cleanup delay")
	}
	if c.TenantShardSize < 0 {
		return errors.New("compactor.tenant-shard-size must not be negative")
	}
	if c.JobTimeout <= 0 {
		c.JobTimeout = 30 * time.Minute
	}
	if c.AbandonedUploadGrace <= 0 {
		c.AbandonedUploadGrace = 7 * 24 * time.Hour
	}
	for t, d := range c.TenantRetention {
		if d < 0 {
			return fmt.Errorf("compactor.tenant-retention-periods: %s=%s is negative", t, d)
		}
	}
	return nil
}

// Retention is the retention period of a tenant (0: forever).
func (c *Config) Retention(tenant string) time.Duration {
	if c.RetentionFor != nil {
		if d, ok := c.RetentionFor(tenant); ok {
			return d
		}
	}
	if d, ok := c.TenantRetention[tenant]; ok {
		return d
	}
	return c.RetentionPeriod
}

// DurationList is a comma-separated list of durations (a flag and a YAML list or string).
type DurationList []time.Duration

func (l *DurationList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, d := range *l {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}

// Set parses "1h,4h,24h".
func (l *DurationList) Set(v string) error {
	var out DurationList
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		d, err := time.ParseDuration(p)
		if err != nil {
			return err
		}
		out = append(out, d)
	}
	*l = out
	return nil
}

// UnmarshalYAML accepts a list of durations or a comma-separated string.
func (l *DurationList) UnmarshalYAML(unmarshal func(any) error) error {
	var list []string
	if err := unmarshal(&list); err == nil {
		return l.Set(strings.Join(list, ","))
	}
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	return l.Set(s)
}

// TenantDurations maps tenants to durations: a flag "a=1h,b=24h" and a YAML map.
type TenantDurations map[string]time.Duration

func (m *TenantDurations) String() string {
	if m == nil {
		return ""
	}
	keys := make([]string, 0, len(*m))
	for k := range *m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + (*m)[k].String()
	}
	return strings.Join(keys, ",")
}

// Set parses "tenant=duration,...".
func (m *TenantDurations) Set(v string) error {
	out := TenantDurations{}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, d, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want tenant=duration", p)
		}
		dur, err := time.ParseDuration(d)
		if err != nil {
			return fmt.Errorf("%q: %w", p, err)
		}
		out[k] = dur
	}
	*m = out
	return nil
}
