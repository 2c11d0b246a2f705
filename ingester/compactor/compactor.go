// Package compactor is the bucket's lifecycle: per tenant it merges the
// ingesters' blocks of a time range (every replica's copy, every cut) into
// one block, rows deduplicated exactly by (series, profile id), then merges
// ranges into larger levels (-compactor.block-ranges); it marks the blocks
// it replaced and deletes them after -compactor.deletion-delay, applies
// retention, and writes a per-tenant bucket index.
//
// It runs inside every ingester. Jobs are spread over the ingesters by the
// ring: a job (tenant, level, range) belongs to the ACTIVE owner of its hash,
// and a tenant's upkeep (marks, deletions, retention, index) to the owner of
// the tenant's hash. A ring change can make two ingesters run one job: both
// outputs hold the same rows, the planner marks all but one (the larger
// ULID), and readers count each profile once by (series, profile id).
//
// Crash safety: a job writes its output under a local work directory,
// uploads it with meta.json last (a block without meta.json is invisible),
// and only then are its inputs marked; marks come from the planner, which
// derives them from the bucket alone, so a crash at any moment is finished
// by the next pass. A partial upload left by a crash (a block directory with
// the compactor's .compactor object and no meta.json) is deleted after
// PartialGrace (twice the job timeout). Nothing is deleted because it could
// not be read: a block whose meta.json cannot be read is an error (and
// hearth_compactor_unreadable_blocks), and a marked block is deleted only
// while its replacement is in the listing.
package compactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/dskit/services"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/block"
)

// OwnerMarker is the object a compactor uploads first into a block it
// writes: a block directory holding it and no meta.json is a crashed upload.
const OwnerMarker = block.CompactorMarker

// Options are the compactor's dependencies.
type Options struct {
	Config Config
	Bucket objstore.Bucket
	// Owns reports whether this instance owns a ring key of the tenant now,
	// among the tenant's shard (nil: it owns every key, as a single ingester
	// does). An error skips the key this pass.
	Owns func(tenant string, key uint32) (bool, error)
	// InShard reports whether this instance is one of the tenant's shard,
	// the instances that may own its jobs and upkeep (nil: it is). Outside
	// it, a pass reads nothing of the tenant. An error skips the tenant.
	InShard func(tenant string) (bool, error)
	// Dir is the local work directory (wiped on start).
	Dir string
	// Instance names the writer in meta.json and the logs.
	Instance   string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Compactor is the dskit service.
type Compactor struct {
	services.Service
	opts Options
	cfg  Config
	log  *slog.Logger
	m    *metrics
	now  func() time.Time

	unreadable atomic.Int64 // blocks with an unreadable meta.json seen this pass
	deleting   atomic.Int64 // owned tenants being deleted, seen this pass
	// oldestDeletion is the Unix time of the earliest request among them (0: none)
	oldestDeletion atomic.Int64

	metaMu sync.Mutex
	metas  map[ulid.ULID]*block.Meta                    // meta.json is immutable: cached by ULID
	marks  map[string]map[ulid.ULID]*block.DeletionMark // per tenant, as last listed

	statusMu sync.Mutex
	jobs     []JobStatus // most recent last
	current  *RunningJob
	passes   int64
	lastPass time.Time
	lastErr  string
	gauged   map[string]bool // tenants with a lastSuccess series
}

// New builds the compactor; start it as a service.
func New(opts Options) (*Compactor, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Bucket == nil || opts.Dir == "" {
		return nil, errors.New("compactor: Bucket and Dir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Compactor{opts: opts, cfg: opts.Config, log: opts.Logger.With("component", "compactor"), now: opts.Now,
		metas: map[ulid.ULID]*block.Meta{}, marks: map[string]map[ulid.ULID]*block.DeletionMark{}}
	c.m = newMetrics(opts.Registerer)
	c.opts.Bucket = opsBucket{Bucket: opts.Bucket, ops: c.m.bucketOps}
	c.Service = services.NewBasicService(c.starting, c.running, nil)
	return c, nil
}

func (c *Compactor) starting(context.Context) error {
	// Whatever a previous process left in the work directory is a crashed job.
	if err := os.RemoveAll(c.opts.Dir); err != nil {
		return fmt.Errorf("compactor: cleaning %s: %w", c.opts.Dir, err)
	}
	return os.MkdirAll(c.opts.Dir, 0o755)
}

func (c *Compactor) running(ctx context.Context) error {
	t := time.NewTicker(c.cfg.CompactionInterval)
	defer t.Stop()
	for {
		if err := c.RunOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("compaction pass failed; retried at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *Compactor) owns(tenant string, key uint32) bool {
	if c.opts.Owns == nil {
		return true
	}
	ok, err := c.opts.Owns(tenant, key)
	if err != nil {
		c.log.Debug("ring lookup failed; skipping", "tenant", tenant, "err", err)
		return false
	}
	return ok
}

func (c *Compactor) inShard(tenant string) bool {
	if c.opts.InShard == nil {
		return true
	}
	ok, err := c.opts.InShard(tenant)
	if err != nil {
		c.log.Debug("ring lookup failed; skipping the tenant", "tenant", tenant, "err", err)
		return false
	}
	return ok
}

// RunOnce is one pass over every tenant: jobs this instance owns, then the
// upkeep of the tenants it owns.
func (c *Compactor) RunOnce(ctx context.Context) error {
	start := c.now()
	c.unreadable.Store(0)
	c.deleting.Store(0)
	c.oldestDeletion.Store(0)
	defer func() {
		c.m.unreadable.Set(float64(c.unreadable.Load()))
		c.m.deletionInProgress.Set(float64(c.deleting.Load()))
		c.m.oldestDeletion.Set(float64(c.oldestDeletion.Load()))
	}()
	tenants, err := c.tenants(ctx)
	if err == nil {
		c.forgetTenantsBut(tenants)
		var errs []error
		for _, t := range tenants {
			if ctx.Err() != nil {
				break
			}
			if err := c.runTenant(ctx, t); err != nil {
				errs = append(errs, fmt.Errorf("tenant %s: %w", t, err))
			}
		}
		err = errors.Join(errs...)
	}
	c.statusMu.Lock()
	c.passes++
	c.lastPass = start
	c.lastErr = ""
	if err != nil {
		c.lastErr = err.Error()
	}
	c.statusMu.Unlock()
	if err != nil {
		c.m.failures.WithLabelValues("pass").Inc()
	}
	return err
}

// forgetTenantsBut deletes the per-tenant series of tenants no longer in
// the bucket (their blocks all deleted), so they do not stay forever.
func (c *Compactor) forgetTenantsBut(tenants []string) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	if c.gauged == nil {
		c.gauged = map[string]bool{}
	}
	for t := range c.gauged {
		if _, found := slices.BinarySearch(tenants, t); !found {
			c.m.lastSuccess.DeleteLabelValues(t)
			delete(c.gauged, t)
		}
	}
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	for t := range c.marks {
		if _, found := slices.BinarySearch(tenants, t); !found {
			delete(c.marks, t)
		}
	}
	for id, m := range c.metas {
		if _, found := slices.BinarySearch(tenants, m.Tenant); !found {
			delete(c.metas, id)
		}
	}
}

func (c *Compactor) tenants(ctx context.Context) ([]string, error) {
	var out []string
	err := c.opts.Bucket.Iter(ctx, "", func(name string) error {
		if strings.HasSuffix(name, "/") {
			out = append(out, strings.TrimSuffix(name, "/"))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// tenantState is a tenant's bucket as listed now.
type tenantState struct {
	metas      []*block.Meta
	marks      map[ulid.ULID]*block.DeletionMark
	partial    []ulid.ULID // block directories whose meta.json is absent
	unreadable map[ulid.ULID]error
	dirs       map[ulid.ULID]bool
	deleted    map[ulid.ULID]bool // deleted (meta.json gone) by this pass since the listing
}

// list reads the tenant's blocks and marks. A meta.json that cannot be read
// (a failed request, or one this build refuses) leaves its block out of the
// plan and in st.unreadable: never partial, never deleted.
func (c *Compactor) list(ctx context.Context, tenant string) (*tenantState, error) {
	st := &tenantState{dirs: map[ulid.ULID]bool{}, unreadable: map[ulid.ULID]error{}, deleted: map[ulid.ULID]bool{}}
	var ids []ulid.ULID
	err := c.opts.Bucket.Iter(ctx, tenant+"/", func(name string) error {
		if !strings.HasSuffix(name, "/") {
			return nil
		}
		id, err := ulid.ParseStrict(path.Base(strings.TrimSuffix(name, "/")))
		if err == nil {
			ids = append(ids, id)
			st.dirs[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing blocks: %w", err)
	}
	for _, id := range ids {
		c.metaMu.Lock()
		m := c.metas[id]
		c.metaMu.Unlock()
		if m == nil {
			m, err = block.ReadMeta(ctx, c.opts.Bucket, tenant, id)
			if errors.Is(err, block.ErrIncomplete) {
				st.partial = append(st.partial, id)
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				st.unreadable[id] = err
				continue
			}
			c.metaMu.Lock()
			c.metas[id] = m
			c.metaMu.Unlock()
		}
		st.metas = append(st.metas, m)
	}
	c.metaMu.Lock()
	for id, m := range c.metas { // gone: deleted by another instance
		if m.Tenant == tenant && !st.dirs[id] {
			delete(c.metas, id)
		}
	}
	c.metaMu.Unlock()
	// Marks are immutable too: only new ones are read.
	c.metaMu.Lock()
	known := c.marks[tenant]
	c.metaMu.Unlock()
	listed := map[ulid.ULID]bool{}
	st.marks, err = block.ListDeletionMarks(ctx, c.opts.Bucket, tenant, func(id ulid.ULID) bool {
		listed[id] = true
		return known[id] == nil
	})
	if err != nil {
		return nil, err
	}
	cache := make(map[ulid.ULID]*block.DeletionMark, len(listed))
	for id := range listed {
		if d := st.marks[id]; d != nil {
			cache[id] = d
		} else if d := known[id]; d != nil {
			st.marks[id], cache[id] = d, d
		}
	}
	c.metaMu.Lock()
	c.marks[tenant] = cache
	c.metaMu.Unlock()
	return st, nil
}

// unreadableErr is the pass's error for the blocks whose meta.json could not be read.
func (st *tenantState) unreadableErr() error {
	var errs []error
	for id, err := range st.unreadable {
		errs = append(errs, fmt.Errorf("block %s: meta.json unreadable, block kept: %w", id, err))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

func (c *Compactor) planConfig(tenant string) PlanConfig {
	return PlanConfig{Ranges: c.cfg.BlockRanges, Wait: c.cfg.FirstLevelWait, DeletionDelay: c.cfg.DeletionDelay, Retention: c.cfg.Retention(tenant)}
}

func (c *Compactor) runTenant(ctx context.Context, tenant string) error {
	if !c.inShard(tenant) {
		return nil // not one of the tenant's shard: nothing to read
	}
	ownTenant := c.owns(tenant, TenantToken(tenant))
	if !ownTenant && !c.mayOwnJobs(ctx, tenant) {
		return nil
	}
	// A tenant being deleted has no jobs, marks or index: its owner deletes
	// it. A mark that cannot be read leaves the tenant alone this pass.
	mark, err := block.ReadTenantDeletionMark(ctx, c.opts.Bucket, tenant)
	if err != nil {
		return err
	}
	if mark.Deleting() {
		if !ownTenant {
			return nil
		}
		finished, err := c.deleteTenant(ctx, tenant, mark)
		if !finished {
			c.deleting.Add(1)
			for at, old := mark.RequestedAt.Unix(), c.oldestDeletion.Load(); old == 0 || at < old; old = c.oldestDeletion.Load() {
				if c.oldestDeletion.CompareAndSwap(old, at) {
					break
				}
			}
		}
		return err
	}
	st, err := c.list(ctx, tenant)
	if err != nil {
		return err
	}
	plan := PlanTenant(tenant, st.metas, st.marks, c.now(), c.planConfig(tenant))
	var errs []error
	if err := st.unreadableErr(); err != nil {
		c.unreadable.Add(int64(len(st.unreadable)))
		errs = append(errs, err)
	}
	ran := false
	for _, j := range plan.Jobs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !c.owns(tenant, j.Token()) {
			continue
		}
		ran = true
		if err := c.runJob(ctx, j, st); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.Key(), err))
		}
	}
	if !ran && !ownTenant {
		return errors.Join(errs...)
	}
	// Marks (and for the tenant's owner: deletions, leftovers, the index)
	// from a fresh listing: what the jobs just wrote included.
	if ran {
		c.stage(tenant, "mark") // uploaded, sources not marked yet
		defer c.stage("", "")
		if st, err = c.list(ctx, tenant); err != nil {
			return errors.Join(append(errs, err)...)
		}
		plan = PlanTenant(tenant, st.metas, st.marks, c.now(), c.planConfig(tenant))
	}
	if err := c.applyMarks(ctx, tenant, plan.Marks, st); err != nil {
		errs = append(errs, err)
	}
	if ownTenant {
		if err := c.deleteBlocks(ctx, tenant, plan.Deletes, st); err != nil {
			errs = append(errs, err)
		}
		if err := c.cleanLeftovers(ctx, tenant, st); err != nil {
			errs = append(errs, err)
		}
	}
	if ownTenant || ran {
		if err := c.writeIndex(ctx, tenant, st); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mayOwnJobs reports whether this instance, not the tenant's owner, may own
// one of the tenant's jobs: planned from the bucket index the owner writes
// every pass (one read instead of listing the blocks and marks). A missing,
// unreadable or stale index (its owner down) says yes, and the tenant is
// listed as before. Blocks uploaded after the index wait for the next one.
func (c *Compactor) mayOwnJobs(ctx context.Context, tenant string) bool {
	rc, err := c.opts.Bucket.Get(ctx, block.IndexPath(tenant))
	if err != nil {
		return true
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return true
	}
	ix, err := block.ParseIndex(b)
	if err != nil || ix.Tenant != tenant || c.now().Sub(ix.UpdatedAt) > indexFreshness(c.cfg.CompactionInterval) {
		return true
	}
	marks := make(map[ulid.ULID]*block.DeletionMark, len(ix.DeletionMarks))
	for _, d := range ix.DeletionMarks {
		marks[d.ID] = d
	}
	for _, j := range PlanTenant(tenant, ix.Blocks, marks, c.now(), c.planConfig(tenant)).Jobs {
		if c.owns(tenant, j.Token()) {
			return true
		}
	}
	return false
}

// indexFreshness: an index older than this is not trusted to plan from (its
// writer missed passes).
func indexFreshness(interval time.Duration) time.Duration { return 3*interval + time.Minute }

func (c *Compactor) applyMarks(ctx context.Context, tenant string, marks []Mark, st *tenantState) error {
	var errs []error
	for _, mk := range marks {
		if _, ok := st.marks[mk.ID]; ok {
			continue
		}
		d := &block.DeletionMark{Version: 1, ID: mk.ID, Tenant: tenant, MarkedAt: c.now().UTC(), Reason: mk.Reason, ReplacedBy: mk.ReplacedBy}
		b, err := block.MarshalDeletionMark(d)
		if err == nil {
			err = c.opts.Bucket.Upload(ctx, block.DeletionMarkPath(tenant, mk.ID), bytes.NewReader(b))
		}
		if err != nil {
			c.m.failures.WithLabelValues("mark").Inc()
			errs = append(errs, fmt.Errorf("marking %s: %w", mk.ID, err))
			continue
		}
		st.marks[mk.ID] = d
		c.m.marked.WithLabelValues(mk.Reason).Inc()
		c.log.Info("block marked for deletion", "tenant", tenant, "block", mk.ID, "reason", mk.Reason, "replaced_by", fmt.Sprint(mk.ReplacedBy))
	}
	return errors.Join(errs...)
}

// deleteBlock deletes meta.json first (the block turns invisible and
// incomplete), then its other objects, then its mark.
func (c *Compactor) deleteBlock(ctx context.Context, tenant string, id ulid.ULID, st *tenantState) error {
	dir := path.Join(tenant, id.String())
	if err := c.opts.Bucket.Delete(ctx, path.Join(dir, block.MetaFile)); err != nil && !c.opts.Bucket.IsObjNotFoundErr(err) {
		return err
	}
	st.deleted[id] = true
	c.metaMu.Lock()
	delete(c.metas, id)
	c.metaMu.Unlock()
	var names []string
	if err := c.opts.Bucket.Iter(ctx, dir+"/", func(name string) error {
		names = append(names, name)
		return nil
	}, objstore.WithRecursiveIter()); err != nil {
		return err
	}
	for _, n := range names {
		if err := c.opts.Bucket.Delete(ctx, n); err != nil && !c.opts.Bucket.IsObjNotFoundErr(err) {
			return err
		}
	}
	if err := c.opts.Bucket.Delete(ctx, block.DeletionMarkPath(tenant, id)); err != nil && !c.opts.Bucket.IsObjNotFoundErr(err) {
		return err
	}
	return nil
}

func (c *Compactor) deleteBlocks(ctx context.Context, tenant string, ids []ulid.ULID, st *tenantState) error {
	var errs []error
	for _, id := range ids {
		if err := c.deleteBlock(ctx, tenant, id, st); err != nil {
			c.m.failures.WithLabelValues("delete").Inc()
			errs = append(errs, fmt.Errorf("deleting %s: %w", id, err))
			continue
		}
		c.m.deleted.Inc()
		c.log.Info("block deleted", "tenant", tenant, "block", id, "reason", st.marks[id].Reason)
	}
	return errors.Join(errs...)
}

// cleanLeftovers finishes deletions a crash interrupted (a mark whose block
// has no meta.json any more), removes marks of blocks that are gone, and
// deletes partial uploads: the compactor's after PartialGrace, an
// ingester's (one that never came back) after AbandonedUploadGrace without
// a write. Only an absent meta.json makes a block partial: an unreadable one
// is kept.
func (c *Compactor) cleanLeftovers(ctx context.Context, tenant string, st *tenantState) error {
	var errs []error
	gone := map[ulid.ULID]bool{}
	for _, id := range st.partial {
		gone[id] = true
	}
	now := c.now()
	for id, d := range st.marks {
		if (st.dirs[id] && !gone[id]) || now.Sub(d.MarkedAt) < c.cfg.DeletionDelay {
			continue
		}
		if err := c.deleteBlock(ctx, tenant, id, st); err != nil {
			errs = append(errs, err)
		}
	}
	for _, id := range st.partial {
		if _, marked := st.marks[id]; marked || now.Sub(ulid.Time(id.Time())) < c.cfg.PartialGrace() {
			continue
		}
		ours, err := c.opts.Bucket.Exists(ctx, path.Join(tenant, id.String(), OwnerMarker))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ours {
			// An ingester's upload: its shipper finishes it, unless the
			// ingester never comes back. Its newest object tells.
			idle, err := c.idleSince(ctx, tenant, id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if idle.IsZero() || now.Sub(idle) < c.cfg.AbandonedUploadGrace {
				continue
			}
		}
		if err := c.deleteBlock(ctx, tenant, id, st); err != nil {
			errs = append(errs, err)
			continue
		}
		c.m.leftovers.WithLabelValues(map[bool]string{true: "compactor", false: "ingester"}[ours]).Inc()
		c.log.Info("partial upload deleted", "tenant", tenant, "block", id, "compactor", ours)
	}
	if len(errs) > 0 {
		c.m.failures.WithLabelValues("cleanup").Inc()
	}
	return errors.Join(errs...)
}

// idleSince is the last-modified time of a block directory's newest object
// (zero when it holds none or the bucket does not say).
func (c *Compactor) idleSince(ctx context.Context, tenant string, id ulid.ULID) (time.Time, error) {
	var names []string
	if err := c.opts.Bucket.Iter(ctx, path.Join(tenant, id.String())+"/", func(name string) error {
		names = append(names, name)
		return nil
	}, objstore.WithRecursiveIter()); err != nil {
		return time.Time{}, err
	}
	var newest time.Time
	for _, n := range names {
		a, err := c.opts.Bucket.Attributes(ctx, n)
		if c.opts.Bucket.IsObjNotFoundErr(err) {
			continue
		}
		if err != nil {
			return time.Time{}, err
		}
		if a.LastModified.IsZero() {
			return time.Time{}, nil
		}
		if a.LastModified.After(newest) {
			newest = a.LastModified
		}
	}
	return newest, nil
}

// writeIndex writes the tenant's bucket index from the pass's listing (the
// marks it wrote and the blocks it deleted applied): listing again only for
// the index doubled the owner's listings. A block uploaded since the listing
// is in the next pass's index.
func (c *Compactor) writeIndex(ctx context.Context, tenant string, st *tenantState) error {
	ix := &block.Index{Version: 1, Tenant: tenant, UpdatedAt: c.now().UTC()}
	for _, m := range st.metas {
		if !st.deleted[m.ULID] {
			ix.Blocks = append(ix.Blocks, m)
		}
	}
	slices.SortFunc(ix.Blocks, func(a, b *block.Meta) int { return a.ULID.Compare(b.ULID) })
	for _, d := range st.marks {
		if st.dirs[d.ID] && !st.deleted[d.ID] {
			ix.DeletionMarks = append(ix.DeletionMarks, d)
		}
	}
	slices.SortFunc(ix.DeletionMarks, func(a, b *block.DeletionMark) int { return a.ID.Compare(b.ID) })
	b, err := block.MarshalIndex(ix)
	if err == nil {
		err = c.opts.Bucket.Upload(ctx, block.IndexPath(tenant), bytes.NewReader(b))
	}
	if err != nil {
		c.m.failures.WithLabelValues("index").Inc()
		return fmt.Errorf("writing the bucket index: %w", err)
	}
	return nil
}

// runJob downloads the inputs, merges them, uploads the output (meta.json
// last) and records the result.
func (c *Compactor) runJob(ctx context.Context, j Job, st *tenantState) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.JobTimeout)
	defer cancel()
	t0 := time.Now()
	js := JobStatus{Tenant: j.Tenant, Level: j.Level, Start: time.Unix(0, j.Start).UTC(), End: time.Unix(0, j.End).UTC(), Inputs: len(j.Inputs), StartedAt: t0.UTC()}
	c.stage(j.Key(), "download")
	defer func() {
		c.stage("", "")
		js.Seconds = time.Since(t0).Seconds()
		js.Result = "success"
		if err != nil {
			js.Result, js.Error = "failure", err.Error()
			c.m.failures.WithLabelValues("job").Inc()
			c.log.Warn("compaction job failed", "job", j.Key(), "inputs", len(j.Inputs), "err", err)
		} else {
			c.m.lastSuccess.WithLabelValues(j.Tenant).Set(float64(time.Now().Unix()))
			c.statusMu.Lock()
			if c.gauged == nil {
				c.gauged = map[string]bool{}
			}
			c.gauged[j.Tenant] = true
			c.statusMu.Unlock()
			c.log.Info("compaction job done", "job", j.Key(), "inputs", len(j.Inputs), "output", js.Output,
				"rows_in", js.RowsIn, "rows_out", js.RowsOut, "duplicates", js.Duplicates, "bytes_in", js.BytesIn, "bytes_out", js.BytesOut, "seconds", js.Seconds)
		}
		c.m.jobs.WithLabelValues(js.Result).Inc()
		c.m.duration.Observe(js.Seconds)
		c.record(js)
	}()

	byID := map[ulid.ULID]*block.Meta{}
	for _, m := range st.metas {
		byID[m.ULID] = m
	}
	work := filepath.Join(c.opts.Dir, fmt.Sprintf("job-%d", time.Now().UnixNano()))
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(work)
	in := filepath.Join(work, "in")
	var readers []*block.Reader
	local, err := filesystem.NewBucket(in)
	if err != nil {
		return err
	}
	for _, id := range j.Inputs {
		m := byID[id]
		if m == nil {
			return fmt.Errorf("input %s is gone", id)
		}
		if err := c.download(ctx, j.Tenant, m, filepath.Join(in, j.Tenant, id.String())); err != nil {
			return fmt.Errorf("downloading %s: %w", id, err)
		}
		r, err := block.Open(ctx, local, j.Tenant+"/"+id.String()+"/", block.ReaderOptions{Meta: m, ReadBufferSize: 32 << 10})
		if err != nil {
			return err
		}
		readers = append(readers, r)
		js.BytesIn += m.Bytes()
	}
	outDir := filepath.Join(work, "out")
	c.stage(j.Key(), "merge")
	meta, mst, err := block.Merge(ctx, outDir, readers, block.MergeOptions{
		Tenant: j.Tenant, Source: "compactor/" + c.opts.Instance,
		Compaction: block.Compaction{Level: j.Level, RangeStart: j.Start, RangeEnd: j.End, Sources: j.Sources},
	})
	if err != nil {
		return fmt.Errorf("merging: %w", err)
	}
	js.Output, js.RowsIn, js.RowsOut, js.Duplicates, js.BytesOut = meta.ULID.String(), mst.InputRows, mst.OutputRows, mst.Duplicates, meta.Bytes()
	c.stage(j.Key(), "upload")
	if err := c.upload(ctx, j.Tenant, filepath.Join(outDir, meta.ULID.String()), meta); err != nil {
		return fmt.Errorf("uploading %s: %w", meta.ULID, err)
	}
	c.metaMu.Lock()
	c.metas[meta.ULID] = &meta
	c.metaMu.Unlock()
	c.m.blocksIn.Add(float64(len(j.Inputs)))
	c.m.blocksOut.Inc()
	c.m.bytesIn.Add(float64(js.BytesIn))
	c.m.bytesOut.Add(float64(js.BytesOut))
	c.m.rowsIn.Add(float64(mst.InputRows))
	c.m.rowsOut.Add(float64(mst.OutputRows))
	c.m.duplicates.Add(float64(mst.Duplicates))
	return nil
}

func (c *Compactor) download(ctx context.Context, tenant string, m *block.Meta, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range m.Files {
		if err := c.downloadFile(ctx, path.Join(tenant, m.ULID.String(), f.Name), filepath.Join(dir, f.Name), f.Size); err != nil {
			return err
		}
	}
	return nil
}

func (c *Compactor) downloadFile(ctx context.Context, name, dst string, size int64) error {
	rc, err := c.opts.Bucket.Get(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d bytes, meta.json says %d", name, n, size)
	}
	return err
}

// upload sends the owner marker, the block's files, and meta.json last.
func (c *Compactor) upload(ctx context.Context, tenant, dir string, meta block.Meta) error {
	prefix := path.Join(tenant, meta.ULID.String())
	if err := c.opts.Bucket.Upload(ctx, path.Join(prefix, OwnerMarker), strings.NewReader(c.opts.Instance+"\n")); err != nil {
		return err
	}
	names := []string{}
	for _, f := range meta.Files {
		names = append(names, f.Name)
	}
	names = append(names, block.MetaFile)
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		err = c.opts.Bucket.Upload(ctx, path.Join(prefix, n), f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
