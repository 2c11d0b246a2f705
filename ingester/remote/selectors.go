package remote

import (
	"context"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/querier"
)

// WithSelectors records the label selectors a query's series matcher was
// built from, so the remote Source can send them to the other ingesters
// (a matcher function cannot travel). They must select at least what the
// matcher does; the Source applies the matcher to what comes back anyway.
// It is querier.WithSelectors: the querier records them itself for requests
// with more than one selector (Diff, render-diff).
func WithSelectors(ctx context.Context, selectors ...string) context.Context {
	return querier.WithSelectors(ctx, selectors...)
}

// SelectorsFrom returns the selectors WithSelectors recorded.
func SelectorsFrom(ctx context.Context) ([]string, bool) { return querier.SelectorsFrom(ctx) }

// SelectorInterceptor records a querier.v1 request's label selector
// (label_selector) or matchers (matchers) with WithSelectors, the same the
// querier builds its matcher from. Install it on the querier handler:
//
//	querierv1connect.NewQuerierServiceHandler(svc, connect.WithInterceptors(remote.SelectorInterceptor()))
//
// Without it remote reads are still right but fetch every series of the
// profile type and filter here.
func SelectorInterceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			switch m := req.Any().(type) {
			case interface{ GetLabelSelector() string }:
				ctx = WithSelectors(ctx, m.GetLabelSelector())
			case interface{ GetMatchers() []string }:
				ctx = WithSelectors(ctx, m.GetMatchers()...)
			}
			return next(ctx, req)
		}
	})
}
