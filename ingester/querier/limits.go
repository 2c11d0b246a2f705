package querier

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

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
	f.IntVar(&c.MaxConcurrent, "querier.max-concurrent", 4, "Most querier.v1 queries this ingester runs at once (its pushes keep the rest of the machine); more wait in a queue (0: unlimited).")
	f.IntVar(&c.MaxQueued, "querier.max-queued", 16, "Most queries waiting for a slot; more are answered 429 (ResourceExhausted).")
	f.DurationVar(&c.Timeout, "querier.timeout", 2*time.Minute, "Longest a query may run, its wait in the queue included (0: no limit).")
}

// Validate refuses negative settings.
func (c *Config) Validate() error {
	if c.MaxConcurrent < 0 || c.MaxQueued < 0 || c.Timeout < 0 {
		return errors.New("querier: max-concurrent, max-queued and timeout must not be negative")
	}
	return nil
}

// LimitsInterceptor applies, before a querier.v1 handler runs, the tenant's
// query limits (validation.Limits: max_query_lookback moves the start up,
// max_query_length refuses a longer range, max_flamegraph_nodes_* default and
// bound max_nodes) and the ingester's concurrency, queue and timeout.
func LimitsInterceptor(cfg Config, limits validation.TenantLimits, multitenancy bool) connect.Interceptor {
	var slots, queue chan struct{}
	if cfg.MaxConcurrent > 0 {
		slots, queue = make(chan struct{}, cfg.MaxConcurrent), make(chan struct{}, cfg.MaxConcurrent+cfg.MaxQueued)
	}
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			t, err := tenant.FromHeader(req.Header(), multitenancy)
			if err != nil {
				return next(ctx, req) // the handler answers a bad tenant
			}
			m, ok := req.Any().(interface{ ProtoReflect() protoreflect.Message })
			if !ok {
				return next(ctx, req)
			}
			if err := ApplyQueryLimits(m.ProtoReflect(), limits.For(t), time.Now()); err != nil {
				return nil, err
			}
			if cfg.Timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
				defer cancel()
			}
			if slots != nil {
				select {
				case queue <- struct{}{}:
					defer func() { <-queue }()
				default:
					return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("this ingester runs %d queries and %d more wait (querier.max-concurrent, querier.max-queued): retry later", cfg.MaxConcurrent, cfg.MaxQueued))
				}
				select {
				case slots <- struct{}{}:
					defer func() { <-slots }()
				case <-ctx.Done():
					return nil, connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("waited for a query slot until the query timeout (querier.timeout): %w", ctx.Err()))
				}
			}
			return next(ctx, req)
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
