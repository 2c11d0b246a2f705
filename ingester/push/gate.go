package push

import (
	"context"
	"runtime"
)

// DecodeGate bounds how many requests decode and hold their profiles at
// once. The in-flight limits bound what is admitted; this bounds what is
// expanded: a request's decoded profile and the working memory of its
// validation, rewrites and WAL record are many times its body (a 316 KB
// gzipped Go heap holds about 8 MB while it is stored), and decoding is CPU
// work, so more decodes at once than a few per core add memory, not
// throughput. A request waits for a slot after its body is read (a slow
// client never holds one) and keeps it until its profiles are stored.
//
// Front-door pushes and replica appends have a gate each: a push keeps its
// slot while its replicas are written, and replica appends never wait on
// anything remote, so neither pool can wait on itself across the ring.
type DecodeGate struct {
	slots chan struct{}
}

// NewDecodeGate returns a gate of n slots; n ≤ 0: twice GOMAXPROCS.
func NewDecodeGate(n int) *DecodeGate {
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	return &DecodeGate{slots: make(chan struct{}, n)}
}

// Enter waits for a slot; release gives it back. A nil gate is open.
func (g *DecodeGate) Enter(ctx context.Context) (release func(), err error) {
	if g == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// InUse is how many slots are taken.
func (g *DecodeGate) InUse() int {
	if g == nil {
		return 0
	}
	return len(g.slots)
}

type gateKey struct{}

// WithDecodeGate returns ctx carrying g, which EnterDecode then waits on.
func WithDecodeGate(ctx context.Context, g *DecodeGate) context.Context {
	return context.WithValue(ctx, gateKey{}, g)
}

// EnterDecode waits for a slot of the gate ctx carries (none: passes at
// once). The write handlers call it once their request's body is read and
// before they decode it.
func EnterDecode(ctx context.Context) (release func(), err error) {
	g, _ := ctx.Value(gateKey{}).(*DecodeGate)
	return g.Enter(ctx)
}
