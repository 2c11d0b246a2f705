package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/grafana/dskit/services"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/compactor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/transport"
)

// Tenant deletion (Mimir's API, docs/production.md "Deleting a tenant"):
//
//   - POST /compactor/delete_tenant (internal port, tenant in X-Scope-OrgID)
//     writes <tenant>/markers/tenant-deletion-mark.json, drops the tenant
//     here and tells every ring member to drop it (POST
//     /internal/v1/tenant-deletion; a member that misses it finds the mark
//     within an interval by itself).
//   - While the mark has no finished time, queries answer nothing for the
//     tenant and its writes are refused (FailedPrecondition: a push acknowledged
//     now would be deleted); every ingester drops its rows, its WAL records
//     (the store's DropTenant) and its local blocks; the tenant's compactor
//     deletes its objects (ingester/compactor/tenantdelete.go).
//   - GET /compactor/delete_tenant_status says what is left.

// TenantDeletion is the module that watches the tenant deletion marks.
const TenantDeletion = "tenant-deletion"

// TenantDeletionPath is the internal endpoint a member calls to tell the
// others that a tenant's deletion was requested (they read the mark themselves).
const TenantDeletionPath = "/internal/v1/tenant-deletion"

// tenantDeletions is what this ingester knows of the tenants' deletion marks.
type tenantDeletions struct {
	a        *App
	interval time.Duration // how stale a tenant's state may be
	mu       sync.Mutex
	known    map[string]*deletionState
	reading  map[string]bool // tenants whose mark a background read is fetching
}

type deletionState struct {
	mark    *block.TenantDeletionMark // nil: none
	checked time.Time
	dropped bool // this ingester dropped what it held of the tenant
}

func newTenantDeletions(a *App, interval time.Duration) *tenantDeletions {
	return &tenantDeletions{a: a, interval: interval, known: map[string]*deletionState{}, reading: map[string]bool{}}
}

// deleting reports whether tenant is being deleted, reading its mark when
// what this ingester knows is older than the interval (a failed read keeps
// what it knew: a bucket outage does not hide a tenant).
func (d *tenantDeletions) deleting(ctx context.Context, t string) bool {
	d.mu.Lock()
	st := d.known[t]
	fresh := st != nil && time.Since(st.checked) < d.interval
	d.mu.Unlock()
	if fresh {
		return st.mark.Deleting()
	}
	m, err := d.refresh(ctx, t)
	if err != nil {
		d.a.Logger.Warn("reading a tenant deletion mark", "tenant", t, "err", err)
		return st != nil && st.mark.Deleting()
	}
	return m.Deleting()
}

// deletingNow is deleting for the write path, which never waits for the
// bucket (pushes go on through a bucket outage): it answers from what this
// ingester knows and, when that is stale, reads the mark in the background.
// A tenant never seen since the start is let through until that read lands
// (milliseconds); what it wrote meanwhile is dropped with the rest when the
// mark is applied.
func (d *tenantDeletions) deletingNow(t string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.known[t]
	if (st == nil || time.Since(st.checked) >= d.interval) && !d.reading[t] {
		d.reading[t] = true
		go func() {
			if _, err := d.refresh(context.Background(), t); err != nil {
				d.a.Logger.Warn("reading a tenant deletion mark", "tenant", t, "err", err)
			}
			d.mu.Lock()
			delete(d.reading, t)
			d.mu.Unlock()
		}()
	}
	return st != nil && st.mark.Deleting()
}

// refresh reads tenant's mark and applies it.
func (d *tenantDeletions) refresh(ctx context.Context, t string) (*block.TenantDeletionMark, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := block.ReadTenantDeletionMark(ctx, d.a.Bucket, t)
	if err != nil {
		d.mu.Lock()
		if st := d.known[t]; st != nil {
			st.checked = time.Now() // retried after an interval, not on every call
		}
		d.mu.Unlock()
		return nil, err
	}
	return m, d.apply(ctx, t, m)
}

// apply records tenant's mark and acts on it: a deletion in progress drops
// the tenant from the store and the local blocks (once); none, or a finished
// one, accepts its writes again.
func (d *tenantDeletions) apply(ctx context.Context, t string, m *block.TenantDeletionMark) error {
	d.mu.Lock()
	st := d.known[t]
	if st == nil {
		st = &deletionState{}
		d.known[t] = st
	}
	st.mark, st.checked = m, time.Now()
	if !m.Deleting() {
		// Remembered with no mark too: the next read is an interval away,
		// not at the next push.
		st.dropped = false
		d.mu.Unlock()
		d.a.Store.Undelete(t)
		return nil
	}
	dropped := st.dropped
	d.mu.Unlock()
	if dropped {
		return nil
	}
	if err := d.drop(ctx, t); err != nil {
		return err
	}
	d.mu.Lock()
	st.dropped = true
	d.mu.Unlock()
	return nil
}

// drop forgets everything this ingester holds of a tenant being deleted:
// head rows and WAL records (the store), local blocks (the shipper).
func (d *tenantDeletions) drop(ctx context.Context, t string) error {
	a := d.a
	if err := a.Store.DropTenant(ctx, t); err != nil {
		return err
	}
	ids, err := a.Shipper.DropTenant(t)
	a.Store.BlocksDropped(ids)
	if serr := a.LocalBlocks.Sync(ctx); serr != nil {
		a.Logger.Warn("listing local blocks", "err", serr)
	}
	if err != nil {
		return fmt.Errorf("dropping the local blocks of tenant %q: %w", t, err)
	}
	a.Logger.Info("tenant being deleted: dropped from this ingester", "tenant", t, "local_blocks_not_uploaded", len(ids))
	return nil
}

// check refreshes every tenant this ingester holds or knows of.
func (d *tenantDeletions) check(ctx context.Context) {
	tenants := map[string]bool{}
	for _, t := range d.a.Store.Tenants() {
		tenants[t] = true
	}
	if entries, err := os.ReadDir(d.a.blocksDir); err == nil {
		for _, e := range entries {
			if e.IsDir() && tenant.Validate(e.Name()) == nil {
				tenants[e.Name()] = true
			}
		}
	}
	d.mu.Lock()
	for t := range d.known {
		tenants[t] = true
	}
	d.mu.Unlock()
	for t := range tenants {
		if ctx.Err() != nil {
			return
		}
		if _, err := d.refresh(ctx, t); err != nil {
			d.a.Logger.Warn("checking a tenant deletion mark", "tenant", t, "err", err)
		}
	}
}

// service checks the marks at start (before the ingester is ready: a
// deletion requested while it was down is applied before it serves) and
// every interval.
func (d *tenantDeletions) service() services.Service {
	return services.NewBasicService(func(ctx context.Context) error {
		// Bounded: a bucket that does not answer delays the start by at
		// most this, and the running loop checks again.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		d.check(ctx)
		return nil
	}, func(ctx context.Context) error {
		t := time.NewTicker(d.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				d.check(ctx)
			}
		}
	}, nil).WithName(TenantDeletion)
}

// errDeleting is the refusal of a write of a tenant being deleted.
func errDeleting(t string) *connect.Error {
	return connect.NewError(connect.CodeFailedPrecondition, (&store.TenantDeletedError{Tenant: t}))
}

// frontDoor refuses pushes of tenants being deleted before they are routed.
type frontDoor struct {
	d    *tenantDeletions
	next push.Appender
}

func (f frontDoor) Append(ctx context.Context, t string, ps []push.Profile) error {
	if f.d.deletingNow(t) {
		return errDeleting(t)
	}
	return f.next.Append(ctx, t, ps)
}

// storeRefusal gives the store's refusal (a replica write of a tenant this
// ingester dropped) its code, for the push handler and the replica endpoint.
type storeRefusal struct{ next push.Appender }

func (s storeRefusal) Append(ctx context.Context, t string, ps []push.Profile) error {
	err := s.next.Append(ctx, t, ps)
	var td *store.TenantDeletedError
	if errors.As(err, &td) {
		return connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return err
}

// hiding answers nothing for a tenant being deleted.
type hiding struct {
	d   *tenantDeletions
	src querier.Source
}

func (h hiding) Select(ctx context.Context, t, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	if h.d.deleting(ctx, t) {
		return nil, nil
	}
	return h.src.Select(ctx, t, ptype, match, start, end)
}

func (h hiding) SeriesLabels(ctx context.Context, t string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	if h.d.deleting(ctx, t) {
		return nil, nil
	}
	return h.src.SeriesLabels(ctx, t, match, start, end)
}

// The sources' optional answers from metadata (querier.TimeSpanner for
// GetProfileStats, BlockStats for AnalyzeQuery) are hidden the same way and
// kept: without them the querier would read every row or skip the blocks.
type blockStatser interface {
	BlockStats(ctx context.Context, tenant string) ([]model.BlockStats, error)
}

type hidingSpan struct{ hiding }

func (h hidingSpan) TimeSpan(ctx context.Context, t string) (oldest, newest int64, ok bool, err error) {
	if h.d.deleting(ctx, t) {
		return 0, 0, false, nil
	}
	return h.src.(querier.TimeSpanner).TimeSpan(ctx, t)
}

type hidingBlocks struct{ hidingSpan }

func (h hidingBlocks) BlockStats(ctx context.Context, t string) ([]model.BlockStats, error) {
	if h.d.deleting(ctx, t) {
		return nil, nil
	}
	return h.src.(blockStatser).BlockStats(ctx, t)
}

func (d *tenantDeletions) hide(srcs ...querier.Source) []querier.Source {
	out := make([]querier.Source, len(srcs))
	for i, s := range srcs {
		h := hiding{d, s}
		_, span := s.(querier.TimeSpanner)
		_, stats := s.(blockStatser)
		switch {
		case span && stats:
			out[i] = hidingBlocks{hidingSpan{h}}
		case span:
			out[i] = hidingSpan{h}
		default: // (no source has block stats without a time span)
			out[i] = h
		}
	}
	return out
}

// refuseWhileDeleting answers the settings and ad hoc profile APIs of a
// tenant being deleted with FailedPrecondition (a write now would be
// deleted, a read would show what is being deleted).
func (d *tenantDeletions) refuseWhileDeleting(h http.Handler, multitenancy bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t, err := tenant.FromHeader(r.Header, multitenancy); err == nil && d.deleting(r.Context(), t) {
			connectError(w, r, errDeleting(t))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// DeleteTenantStatus is GET /compactor/delete_tenant_status: Mimir's
// tenant_id and blocks_deleted (no block of the tenant is left), and what
// else is left.
type DeleteTenantStatus struct {
	TenantID      string     `json:"tenant_id"`
	BlocksDeleted bool       `json:"blocks_deleted"`
	Deleting      bool       `json:"deletion_in_progress"`
	RequestedAt   *time.Time `json:"requested_at,omitempty"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
	compactor.DeletionLeft
	// Ingesters told by POST /compactor/delete_tenant, and those that could
	// not be (they find the mark by themselves within an interval).
	Told    []string `json:"ingesters_told,omitempty"`
	NotTold []string `json:"ingesters_not_told,omitempty"`
}

func (d *tenantDeletions) status(ctx context.Context, t string) (*DeleteTenantStatus, error) {
	m, err := block.ReadTenantDeletionMark(ctx, d.a.Bucket, t)
	if err != nil {
		return nil, err
	}
	names, err := compactor.ListTenant(ctx, d.a.Bucket, t)
	if err != nil {
		return nil, err
	}
	left := compactor.CountLeft(t, names)
	st := &DeleteTenantStatus{TenantID: t, BlocksDeleted: left.Blocks == 0, Deleting: m.Deleting(), DeletionLeft: left}
	if m != nil {
		st.RequestedAt, st.FinishedAt = &m.RequestedAt, m.FinishedAt
	}
	return st, nil
}

func (d *tenantDeletions) tenantOf(w http.ResponseWriter, r *http.Request, method string) (string, bool) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, "use "+method, http.StatusMethodNotAllowed)
		return "", false
	}
	t, err := tenant.FromHeader(r.Header, d.a.Config.Auth.MultitenancyEnabled)
	if err != nil {
		code := http.StatusUnauthorized
		if tenant.IsInvalid(err) {
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return "", false
	}
	return t, true
}

// serveDelete is POST /compactor/delete_tenant.
func (d *tenantDeletions) serveDelete(w http.ResponseWriter, r *http.Request) {
	t, ok := d.tenantOf(w, r, http.MethodPost)
	if !ok {
		return
	}
	ctx := r.Context()
	m, err := block.ReadTenantDeletionMark(ctx, d.a.Bucket, t)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if !m.Deleting() { // none, or a finished one: a new deletion
		m = &block.TenantDeletionMark{Version: 1, Tenant: t, RequestedAt: time.Now().UTC()}
		if err := block.WriteTenantDeletionMark(ctx, d.a.Bucket, m); err != nil {
			http.Error(w, "writing the tenant deletion mark: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		d.a.Logger.Info("tenant deletion requested", "tenant", t)
	}
	if err := d.apply(ctx, t, m); err != nil {
		// The mark is written: the next check retries the drop.
		d.a.Logger.Error("dropping a tenant being deleted; retried at the next check", "tenant", t, "err", err)
	}
	told, notTold := d.broadcast(ctx, t)
	st, err := d.status(ctx, t)
	if err != nil {
		st = &DeleteTenantStatus{TenantID: t, Deleting: true, RequestedAt: &m.RequestedAt}
	}
	st.Told, st.NotTold = told, notTold
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// broadcast tells every other ring member to read the tenant's mark now.
func (d *tenantDeletions) broadcast(ctx context.Context, t string) (told, notTold []string) {
	members, err := d.a.Ring.Members(ctx)
	if err != nil {
		d.a.Logger.Warn("tenant deletion: reading the ring to tell the members", "err", err)
		return nil, nil
	}
	self := d.a.Ring.InstanceID()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m.ID == self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.tell(ctx, m.Address, t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				d.a.Logger.Warn("tenant deletion: a member could not be told (it finds the mark within an interval)", "member", m.ID, "err", err)
				notTold = append(notTold, m.ID)
				return
			}
			told = append(told, m.ID)
		}()
	}
	wg.Wait()
	return told, notTold
}

func (d *tenantDeletions) tell(ctx context.Context, addr, t string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, transport.BaseURL(d.a.peerScheme, addr)+TenantDeletionPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set(tenant.Header, t)
	resp, err := d.a.peers.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return transport.ReadError(resp)
	}
	return nil
}

// serveTold is POST /internal/v1/tenant-deletion: a member says a tenant's
// deletion was requested; the mark in the bucket is what counts.
func (d *tenantDeletions) serveTold(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	t, err := tenant.FromHeader(r.Header, true)
	if err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeInvalidArgument, err))
		return
	}
	if _, err := d.refresh(r.Context(), t); err != nil {
		transport.WriteError(w, connect.NewError(connect.CodeUnavailable, err))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// serveStatus is GET /compactor/delete_tenant_status.
func (d *tenantDeletions) serveStatus(w http.ResponseWriter, r *http.Request) {
	t, ok := d.tenantOf(w, r, http.MethodGet)
	if !ok {
		return
	}
	st, err := d.status(r.Context(), t)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// initTenantDeletion is the module: the endpoints and the watcher of the marks.
func (a *App) initTenantDeletion() (services.Service, error) {
	d := a.deletions
	a.internalMux.Handle("/compactor/delete_tenant", whileStarting(a.Store, http.HandlerFunc(d.serveDelete), plainError))
	a.internalMux.Handle("/compactor/delete_tenant_status", http.HandlerFunc(d.serveStatus))
	a.internalMux.Handle(TenantDeletionPath, whileStarting(a.Store, http.HandlerFunc(d.serveTold), replicaError))
	return d.service(), nil
}
