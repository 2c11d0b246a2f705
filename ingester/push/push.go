// Package push is the write path's front door: push.v1 (connect, gRPC,
// gRPC-web) and Pyroscope's HTTP /ingest. It resolves the tenant, decodes and
// validates every profile of a request before anything is stored, and hands
// the whole request to an Appender. Clients get a 4xx that names the problem
// for bad input, never a 5xx.
package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/grafana/dskit/services"
	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/normalize"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/symdb"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/usage"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// Profile is one validated profile ready to store.
type Profile struct {
	ID        head.ProfileID
	Labels    model.Labels // sorted; carries service_name and __name__
	Profile   *googlev1.Profile
	TimeNanos int64
	Raw       []byte // as received (maybe gzip), for the write-ahead log
}

// Appender stores a request's profiles, all or nothing as far as it can.
type Appender interface {
	Append(ctx context.Context, tenant string, profiles []Profile) error
}

// Handler serves the push APIs.
type Handler struct {
	// Limits gives each tenant's effective limits, asked per request so that
	// a runtime config reload applies without a restart.
	Limits       validation.TenantLimits
	Appender     Appender
	Multitenancy bool
	Logger       *slog.Logger
	Now          func() time.Time
	// Normalize selects Pyroscope's rewrites (default: all of Pyroscope's).
	Normalize normalize.Config
	// Usage counts every request's profiles and bytes, received and
	// discarded, per tenant and usage group.
	Usage *usage.Metrics

	limiters sync.Map // tenant → *rate.Limiter
}

var _ pushv1connect.PusherServiceHandler = (*Handler)(nil)

// NewHandler returns a handler whose metrics are registered with reg (may be nil).
func NewHandler(lim validation.TenantLimits, app Appender, multitenancy bool, logger *slog.Logger, reg prometheus.Registerer) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	return &Handler{Limits: lim, Appender: app, Multitenancy: multitenancy, Logger: logger, Now: time.Now, Normalize: normalize.Default(), Usage: usage.NewMetrics(reg)}
}

// Push implements push.v1.PusherService.
func (h *Handler) Push(ctx context.Context, req *connect.Request[pushv1.PushRequest]) (*connect.Response[pushv1.PushResponse], error) {
	t, err := tenant.FromHeader(req.Header(), h.Multitenancy)
	if err != nil {
		return nil, TenantError(err)
	}
	lim := h.Limits.For(t)
	rec := h.Usage.Begin(t, lim.DistributorUsageGroups)
	// Every profile is in the usage count before the first is decoded: a
	// refusal discards them all.
	var items []*usage.Item
	var size int
	for _, s := range req.Msg.Series {
		labels := model.FromProto(s.Labels).Sort()
		for _, raw := range s.Samples {
			size += len(raw.RawProfile)
			items = append(items, rec.Add(labels, len(raw.RawProfile)))
		}
	}
	rec.Received(size)
	release, err := EnterDecode(ctx)
	if err != nil {
		return nil, h.reject(rec, err)
	}
	defer release()
	// The profiles die with the push: their arenas go back to the pool once
	// the appender returned (it awaits every write that reads them).
	var arenas []*pprofdec.Arena
	defer func() {
		for _, a := range arenas {
			a.Release()
		}
	}()
	var profiles []Profile
	for si, s := range req.Msg.Series {
		for pi, raw := range s.Samples {
			p, a, err := h.decode(lim, items[len(profiles)], raw.RawProfile, raw.ID, 0)
			arenas = append(arenas, a)
			if err != nil {
				return nil, h.reject(rec, fmt.Errorf("series %d profile %d: %w", si, pi, err))
			}
			profiles = append(profiles, p)
		}
	}
	if err := h.store(ctx, rec, lim, profiles, size); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pushv1.PushResponse{}), nil
}

// decode turns one raw profile, whose series labels are it's, into a
// validated Profile, decoded into a pooled arena that the caller releases
// once the profile is stored (also after an error). fallbackNanos is the time
// to use when the profile has none (the /ingest from parameter), 0: now.
func (h *Handler) decode(lim *validation.Limits, it *usage.Item, raw []byte, id string, fallbackNanos int64) (Profile, *pprofdec.Arena, error) {
	p, a, err := pprofdec.Decode(raw, lim.MaxProfileSizeBytes)
	if err != nil {
		var se *pprofdec.SizeError
		if errors.As(err, &se) {
			it.Size = lim.MaxProfileSizeBytes // at least (Pyroscope counts the limit)
			return Profile{}, a, &validation.Error{Reason: validation.ProfileTooLarge, Msg: err.Error() + " (limits.max-profile-size-bytes)"}
		}
		return Profile{}, a, &validation.Error{Reason: validation.InvalidProfile, Msg: "cannot decode the profile: " + err.Error()}
	}
	if pprofdec.IsGzip(raw) {
		it.Size = p.SizeVT()
	} else {
		it.Size = len(raw)
	}
	pr, err := h.finish(lim, it, p, a, raw, id, fallbackNanos)
	return pr, a, err
}

// finish completes and validates a decoded profile, whose series labels so
// far are it's, against the tenant's limits; it gets the series labels
// (usage groups match them). raw is the profile as received, for the
// write-ahead log; nil, or a profile the normalizations changed, is
// marshalled again, into the bytes of a, the profile's arena (nil: a
// profile of a converter, marshalled into its own).
func (h *Handler) finish(lim *validation.Limits, it *usage.Item, p *googlev1.Profile, a *pprofdec.Arena, raw []byte, id string, fallbackNanos int64) (Profile, error) {
	labels := it.Labels.Clone()
	if labels.Get(model.LabelServiceName) == "" {
		labels = labels.Set(model.LabelServiceName, model.UnknownService)
	}
	if labels.Get(model.LabelProfileName) == "" {
		// A copy: the name may be one of the profile's strings, which die
		// with the push (pprofdec.Arena), and the labels outlive it.
		labels = labels.Set(model.LabelProfileName, strings.Clone(ingest.ProfileName(p)))
	}
	labels = labels.Delete(model.LabelSpanID)
	labels.Sort()
	it.Labels = labels
	labels, changed, err := h.pyroscopeRewrites(labels, p)
	if err != nil {
		return Profile{}, err
	}
	if err := lim.Labels(labels); err != nil {
		return Profile{}, err
	}
	labels = withPrivateServiceName(labels)
	now := h.Now()
	ts := p.TimeNanos
	if ts == 0 {
		ts = fallbackNanos
	}
	if ts == 0 {
		ts = now.UnixNano()
	}
	if err := lim.Profile(p, ts, now); err != nil {
		return Profile{}, err
	}
	if changed || raw == nil {
		// The WAL must replay what is stored, rewrites included.
		if raw, err = marshal(p, a); err != nil {
			return Profile{}, err
		}
	}
	var pid head.ProfileID
	if u, err := uuid.Parse(id); id != "" && err == nil {
		pid = head.ProfileID(u)
	} else {
		pid = head.ProfileID(uuid.New())
	}
	return Profile{ID: pid, Labels: labels, Profile: p, TimeNanos: ts, Raw: raw}, nil
}

// marshal encodes p into a's bytes (nil: its own). The bytes die with the
// push: the WAL record and the replicas' bodies are copies.
func marshal(p *googlev1.Profile, a *pprofdec.Arena) ([]byte, error) {
	if a == nil {
		return p.MarshalVT()
	}
	b := a.Bytes(p.SizeVT())
	n, err := p.MarshalToSizedBufferVT(b)
	if err != nil {
		return nil, err
	}
	return b[len(b)-n:], nil
}

// tenantLimiter is a tenant's rate limiter and the limit it was built for.
type tenantLimiter struct {
	mu              sync.Mutex
	l               *rate.Limiter
	rateMB, burstMB float64
	lastUsed        time.Time
}

// CleanupService drops, every interval, the usage metrics and the rate
// limiters of tenants that pushed nothing for inactive. A limiter idle that
// long has refilled its bucket (inactive is minutes, a bucket refills in
// burst/rate seconds), so a tenant that comes back gets an equal fresh one.
func (h *Handler) CleanupService(interval, inactive time.Duration) services.Service {
	return services.NewTimerService(interval, nil, func(context.Context) error {
		now := h.Now()
		h.Usage.Cleanup(now, inactive)
		h.forgetIdleLimiters(now.Add(-inactive))
		return nil
	}, nil).WithName("push-tenant-cleanup")
}

// forgetIdleLimiters drops the rate limiters last used before cutoff.
func (h *Handler) forgetIdleLimiters(cutoff time.Time) {
	h.limiters.Range(func(k, v any) bool {
		tl := v.(*tenantLimiter)
		tl.mu.Lock()
		idle := tl.lastUsed.Before(cutoff)
		tl.mu.Unlock()
		if idle {
			h.limiters.CompareAndDelete(k, v)
		}
		return true
	})
}

// allow takes n bytes from the tenant's budget, first adopting the tenant's
// current limits (a runtime config reload may have changed them).
func (h *Handler) allow(t string, lim *validation.Limits, n int) bool {
	if lim.IngestionRateMB <= 0 {
		return true
	}
	v, ok := h.limiters.Load(t)
	if !ok {
		v, _ = h.limiters.LoadOrStore(t, &tenantLimiter{})
	}
	tl := v.(*tenantLimiter)
	now := h.Now()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	burst := int(max(lim.IngestionBurstSizeMB, lim.IngestionRateMB) * 1e6)
	switch {
	case tl.l == nil:
		tl.l = rate.NewLimiter(rate.Limit(lim.IngestionRateMB*1e6), burst)
	case tl.rateMB != lim.IngestionRateMB || tl.burstMB != lim.IngestionBurstSizeMB:
		tl.l.SetLimitAt(now, rate.Limit(lim.IngestionRateMB*1e6))
		tl.l.SetBurstAt(now, burst)
	}
	tl.rateMB, tl.burstMB, tl.lastUsed = lim.IngestionRateMB, lim.IngestionBurstSizeMB, now
	return tl.l.AllowN(now, n)
}

// store applies the rate limit and appends, and ends the request's usage
// count either way.
func (h *Handler) store(ctx context.Context, rec *usage.Request, lim *validation.Limits, profiles []Profile, size int) error {
	if len(profiles) == 0 {
		rec.End("", h.Now())
		return nil
	}
	t := rec.Tenant()
	if !h.allow(t, lim, size) {
		return h.reject(rec, &validation.Error{Reason: validation.RateLimited,
			Msg: fmt.Sprintf("tenant %q is over its ingestion rate of %.1f MB/s (limits.ingestion-rate-mb): retry later", t, lim.IngestionRateMB)})
	}
	if err := h.Appender.Append(ctx, t, profiles); err != nil {
		return h.reject(rec, err)
	}
	rec.End("", h.Now())
	return nil
}

// reject maps an error to a connect error, counting the request's profiles
// as discarded for the error's reason.
func (h *Handler) reject(rec *usage.Request, err error) error {
	code, reason := Classify(err)
	rec.End(reason, h.Now())
	if code == connect.CodeInternal || code == connect.CodeUnavailable {
		h.Logger.Error("push failed", "tenant", rec.Tenant(), "err", err)
	} else {
		h.Logger.Debug("push rejected", "tenant", rec.Tenant(), "reason", reason, "err", err)
	}
	return connect.NewError(code, err)
}

// TenantError is the connect error of a tenant that could not be resolved:
// Unauthenticated (401) without one, InvalidArgument (400) for an invalid
// or federated id.
func TenantError(err error) *connect.Error {
	if tenant.IsInvalid(err) {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewError(connect.CodeUnauthenticated, err)
}

// Classify maps a write-path error to its connect code and a reason label.
func Classify(err error) (connect.Code, string) {
	var ve *validation.Error
	var inv *symdb.ErrInvalid
	var ce *connect.Error
	var un interface{ Unavailable() bool } // e.g. the store's UnavailableError
	switch {
	case errors.As(err, &un) && un.Unavailable():
		return connect.CodeUnavailable, connect.CodeUnavailable.String()
	case errors.As(err, &ve):
		if ve.Reason == validation.RateLimited {
			return connect.CodeResourceExhausted, string(ve.Reason)
		}
		return connect.CodeInvalidArgument, string(ve.Reason)
	case errors.As(err, &inv):
		return connect.CodeInvalidArgument, string(validation.InvalidProfile)
	case errors.Is(err, head.ErrSeriesLimit):
		return connect.CodeResourceExhausted, string(validation.SeriesLimit)
	case errors.As(err, &ce):
		return ce.Code(), ce.Code().String()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return connect.CodeCanceled, "canceled"
	}
	return connect.CodeInternal, "internal"
}

// SanitizeStrings replaces invalid UTF-8 in the string table with U+FFFD:
// protobuf strings must be UTF-8, and a stored invalid string would make every
// later query response for the tenant undecodable by clients.
func SanitizeStrings(p *googlev1.Profile) {
	for i, s := range p.StringTable {
		if !utf8.ValidString(s) {
			p.StringTable[i] = strings.ToValidUTF8(s, "\uFFFD")
		}
	}
}
