package querier

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hearth-dev/hearth/ingester/querylimit"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// Config is the ingester-wide query settings (YAML section `querier`).
type Config struct {
	MaxConcurrent int           `yaml:"max_concurrent"`
	MaxQueued     int           `yaml:"max_queued"`
	Timeout       time.Duration `yaml:"timeout"`
}

// RegisterFlags registers -querier.max-concurrent, -max-queued and -timeout.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.IntVar(&c.MaxConcurrent, "querier.max-concurrent", DefaultMaxConcurrent(), "Most queries (querier.v1 and render) this ingester runs at once, so that its pushes keep the rest of the machine; more wait in a queue (0: unlimited). The reads other ingesters make of this one for their queries (/internal/v1/select) have a pool of their own of the same size and queue. Default: half the cores Go uses, at least 1.")
	f.IntVar(&c.MaxQueued, "querier.max-queued", 32, "Most queries waiting for a slot (and, apart, most peer reads); more are answered 429 (ResourceExhausted).")
	f.DurationVar(&c.Timeout, "querier.timeout", 2*time.Minute, "Longest a query may run, its wait in the queue included (0: no limit).")
}

// DefaultMaxConcurrent is half the cores Go uses, at least 1: a query runs on
// one goroutine, so queries can take at most half the machine from pushes.
// On 2 cores, one slot instead of 4 halved a steady push load's median
// latency beside back-to-back flame graph queries and answered 13% fewer of
// them (docs/benchmarks.md, "Heavy query beside pushes").
func DefaultMaxConcurrent() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Validate refuses negative settings.
func (c *Config) Validate() error {
	if c.MaxConcurrent < 0 || c.MaxQueued < 0 || c.Timeout < 0 {
		return errors.New("querier: max-concurrent, max-queued and timeout must not be negative")
	}
	return nil
}

// Limiter applies, before a query runs, the tenant's query limits
// (validation.Limits: max_query_lookback moves the start up,
// max_query_length refuses a longer range, max_flamegraph_nodes_* default and
// bound max_nodes, max_fetched_*_per_query become the query's budget) and the
// ingester's concurrency, queue and timeout. Every query entry point goes
// through one Limiter: querier.v1 (Interceptor) and the plain-HTTP render
// endpoints (Run with the querier.v1 request they stand for), so they share
// the slots and the queue.
//
// The reads other ingesters make of this one for their queries
// (/internal/v1/select and /internal/v1/series-labels, RunPeer) have a pool
// of their own, of the same size and queue. Sharing the queries' pool would
// deadlock: a query holds a slot on ingester A while it waits for peer B's
// select, and B's slots may all be held by B's queries waiting for A's
// selects, queued behind A's queries: no slot is ever freed until the
// timeout. A peer read waits on nothing remote (it reads this ingester's
// heads and local disk), so with its own pool it always finishes and frees
// its slot, and an ingester runs at most max-concurrent queries plus
// max-concurrent peer reads. This is the separation Mimir and Pyroscope make
// between the queriers' queue and the ingesters' read path.
type Limiter struct {
	cfg          Config
	limits       validation.TenantLimits
	multitenancy bool
	queries      *pool
	peers        *pool
}

// NewLimiter returns the ingester's query limiter.
func NewLimiter(cfg Config, limits validation.TenantLimits, multitenancy bool) *Limiter {
	return &Limiter{cfg: cfg, limits: limits, multitenancy: multitenancy,
		queries: newPool(cfg.MaxConcurrent, cfg.MaxQueued, "queries"),
		peers:   newPool(cfg.MaxConcurrent, cfg.MaxQueued, "reads for other ingesters' queries"),
	}
}

// pool is size slots and a queue of queued more; nil: unlimited.
type pool struct {
	size, queued int
	what         string
	slots, queue chan struct{}
}

func newPool(size, queued int, what string) *pool {
	if size <= 0 {
		return nil
	}
	return &pool{size: size, queued: queued, what: what, slots: make(chan struct{}, size), queue: make(chan struct{}, size+queued)}
}

// run runs fn in a slot, after waiting in the queue for one until ctx ends;
// beyond the queue it refuses at once (ResourceExhausted: retry later).
func (p *pool) run(ctx context.Context, fn func(context.Context) error) error {
	if p == nil {
		return fn(ctx)
	}
	select {
	case p.queue <- struct{}{}:
		defer func() { <-p.queue }()
	default:
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("this ingester runs %d %s and %d more wait (querier.max-concurrent, querier.max-queued): retry later", p.size, p.what, p.queued))
	}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("waited for a query slot until the query timeout (querier.timeout) or the caller gave up: %w", ctx.Err()))
	}
	return fn(ctx)
}

// RunPeer runs fn, another ingester's read of this one for its query, in the
// peer reads' pool (see Limiter), within the query timeout. A nil Limiter
// runs fn as is.
func (l *Limiter) RunPeer(ctx context.Context, fn func(context.Context) error) error {
	if l == nil {
		return fn(ctx)
	}
	if l.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.cfg.Timeout)
		defer cancel()
	}
	return l.peers.run(ctx, fn)
}

// Run applies the limits to req (adjusting it in place) and runs fn with the
// query's context (timeout, budget) in a slot. A request without a valid
// tenant runs fn unlimited: the handler answers the bad tenant. A nil
// Limiter runs fn as is.
func (l *Limiter) Run(ctx context.Context, h http.Header, req protoreflect.Message, fn func(context.Context) error) error {
	if l == nil {
		return fn(ctx)
	}
	t, err := tenant.FromHeader(h, l.multitenancy)
	if err != nil {
		return fn(ctx)
	}
	lim := l.limits.For(t)
	if req != nil {
		if err := ApplyQueryLimits(req, lim, time.Now()); err != nil {
			return err
		}
	}
	ctx = querylimit.With(ctx, querylimit.New(int64(lim.MaxFetchedBytesPerQuery), int64(lim.MaxFetchedSeriesPerQuery)))
	if l.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.cfg.Timeout)
		defer cancel()
	}
	return l.queries.run(ctx, fn)
}

// Interceptor applies the limiter to every querier.v1 call.
func (l *Limiter) Interceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			var m protoreflect.Message
			if pm, ok := req.Any().(interface{ ProtoReflect() protoreflect.Message }); ok {
				m = pm.ProtoReflect()
			}
			var resp connect.AnyResponse
			err := l.Run(ctx, req.Header(), m, func(ctx context.Context) error {
				var err error
				resp, err = next(ctx, req)
				return err
			})
			return resp, err
		}
	})
}

// nodesLimited are the requests whose max_nodes the flame graph limits bound
// (Pyroscope leaves SelectMergeProfile, a whole pprof, alone).
var nodesLimited = map[protoreflect.FullName]bool{
	"querier.v1.SelectMergeStacktracesRequest": true,
	"querier.v1.SelectMergeSpanProfileRequest": true,
}

// ApplyQueryLimits checks and adjusts a request's time range (start, end in
// milliseconds) and max_nodes in place; the left and right of a diff too. A
// range entirely before the lookback becomes empty (end before start moved
// up: nothing matches). A request without a range (0) is left alone.
func ApplyQueryLimits(m protoreflect.Message, l *validation.Limits, now time.Time) error {
	fields := m.Descriptor().Fields()
	for _, side := range []protoreflect.Name{"left", "right"} {
		if f := fields.ByName(side); f != nil && f.Kind() == protoreflect.MessageKind && m.Has(f) {
			if err := ApplyQueryLimits(m.Mutable(f).Message(), l, now); err != nil {
				return err
			}
		}
	}
	sf, ef := fields.ByName("start"), fields.ByName("end")
	if sf != nil && ef != nil && sf.Kind() == protoreflect.Int64Kind && ef.Kind() == protoreflect.Int64Kind {
		start, end := m.Get(sf).Int(), m.Get(ef).Int()
		if start > 0 && end > 0 {
			s, e, err := queryRange(l, start, end, now)
			if err != nil {
				return err
			}
			m.Set(sf, protoreflect.ValueOfInt64(s))
			m.Set(ef, protoreflect.ValueOfInt64(e))
		}
	}
	if nf := fields.ByName("max_nodes"); nf != nil && nf.Kind() == protoreflect.Int64Kind && nodesLimited[m.Descriptor().FullName()] {
		n, err := maxNodes(l, m.Get(nf).Int())
		if err != nil {
			return err
		}
		if n > 0 {
			m.Set(nf, protoreflect.ValueOfInt64(n))
		}
	}
	return nil
}

// queryRange applies the lookback, then the length limit (milliseconds).
func queryRange(l *validation.Limits, start, end int64, now time.Time) (int64, int64, error) {
	if lb := l.MaxQueryLookback; lb > 0 {
		minStart := now.Add(-lb).UnixMilli()
		if end < minStart {
			return minStart, minStart - 1, nil // entirely before the lookback: an empty range
		}
		start = max(start, minStart)
	}
	if ml := l.MaxQueryLength; ml > 0 && end > start && time.Duration(end-start)*time.Millisecond > ml {
		return 0, 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("the query time range %s exceeds the limit of %s (max_query_length, -querier.max-query-length)",
			(time.Duration(end-start)*time.Millisecond).String(), ml))
	}
	return start, end, nil
}

// maxNodes is Pyroscope's: 0 takes the default, more than the max is refused.
func maxNodes(l *validation.Limits, n int64) (int64, error) {
	if n == 0 {
		return int64(l.MaxFlameGraphNodesDefault), nil
	}
	if mx := int64(l.MaxFlameGraphNodesMax); mx > 0 && (n > mx || n < 0) {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("max_nodes %d is not within the limit of %d nodes (max_flamegraph_nodes_max, -querier.max-flamegraph-nodes-max)", n, mx))
	}
	return n, nil
}
