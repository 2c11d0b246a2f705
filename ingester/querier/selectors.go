package querier

import "context"

type selectorsKey struct{}

// WithSelectors records the label selectors a query's series matcher is built
// from, so that a source that cannot take a matcher function (the other
// ingesters) can send them instead. remote.WithSelectors is this function.
func WithSelectors(ctx context.Context, selectors ...string) context.Context {
	return context.WithValue(ctx, selectorsKey{}, selectors)
}

// SelectorsFrom returns the selectors WithSelectors recorded.
func SelectorsFrom(ctx context.Context) ([]string, bool) {
	s, ok := ctx.Value(selectorsKey{}).([]string)
	return s, ok
}
