// Package querylimit carries one query's budget (bytes read from block files,
// series touched) in its context, and counts a bucket's reads against it.
// The querier creates the budget from the tenant's limits; the block readers
// below it charge it through Bucket without knowing about tenants.
package querylimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/thanos-io/objstore"
)

// Budget is one query's: the bytes it read and the distinct series it touched.
type Budget struct {
	maxBytes, maxSeries int64
	bytes               atomic.Int64
	mu                  sync.Mutex
	series              map[uint64]struct{}
}

// New returns a budget; a max of 0 is unlimited (still counted).
func New(maxBytes, maxSeries int64) *Budget {
	return &Budget{maxBytes: maxBytes, maxSeries: maxSeries, series: map[uint64]struct{}{}}
}

// Bytes is what the query read so far.
func (b *Budget) Bytes() int64 { return b.bytes.Load() }

// Series is the number of distinct series the query touched so far.
func (b *Budget) Series() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.series)
}

// Error is a refused query: which limit, and by how much.
type Error struct {
	Limit string // YAML name
	Flag  string
	What  string
	Max   int64
}

func (e *Error) Error() string {
	return fmt.Sprintf("the query %s more than the limit of %d (%s, -%s): narrow its time range or label selector", e.What, e.Max, e.Limit, e.Flag)
}

// IsExceeded reports whether err is, or wraps, a budget refusal.
func IsExceeded(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

func (b *Budget) bytesErr() error {
	return &Error{Limit: "max_fetched_bytes_per_query", Flag: "querier.max-fetched-bytes-per-query", What: "read " + fmt.Sprint(b.bytes.Load()) + " bytes from block files,", Max: b.maxBytes}
}

// ChargeBytes adds n read bytes; it refuses once the total is over the limit.
func (b *Budget) ChargeBytes(n int64) error {
	if t := b.bytes.Add(n); b.maxBytes > 0 && t > b.maxBytes {
		return b.bytesErr()
	}
	return nil
}

// Check refuses a budget already over either limit (a shared load charged it
// without refusing).
func (b *Budget) Check() error {
	if b.maxBytes > 0 && b.bytes.Load() > b.maxBytes {
		return b.bytesErr()
	}
	if n := int64(b.Series()); b.maxSeries > 0 && n > b.maxSeries {
		return b.seriesErr(n)
	}
	return nil
}

func (b *Budget) seriesErr(n int64) error {
	return &Error{Limit: "max_fetched_series_per_query", Flag: "querier.max-fetched-series-per-query", What: fmt.Sprintf("touched %d series,", n), Max: b.maxSeries}
}

// AddSeries counts the series of the given label hashes (each once); it
// refuses once there are more than the limit.
func (b *Budget) AddSeries(hashes ...uint64) error {
	b.mu.Lock()
	for _, h := range hashes {
		b.series[h] = struct{}{}
	}
	n := int64(len(b.series))
	b.mu.Unlock()
	if b.maxSeries > 0 && n > b.maxSeries {
		return b.seriesErr(n)
	}
	return nil
}

type ctxKey struct{}

type entry struct {
	b       *Budget
	lenient bool // charge, never refuse
}

// With returns ctx carrying b.
func With(ctx context.Context, b *Budget) context.Context {
	return context.WithValue(ctx, ctxKey{}, entry{b: b})
}

// From returns ctx's budget, or nil.
func From(ctx context.Context) *Budget {
	e, _ := ctx.Value(ctxKey{}).(entry)
	return e.b
}

// Lenient returns ctx whose budget is charged but never refuses: for loads
// shared by every query waiting on them (a block's index, its symbols), which
// must not fail for the others because one query is over its budget. The
// query itself is refused at its next charge or Check.
func Lenient(ctx context.Context) context.Context {
	e, ok := ctx.Value(ctxKey{}).(entry)
	if !ok {
		return ctx
	}
	e.lenient = true
	return context.WithValue(ctx, ctxKey{}, e)
}

func charge(ctx context.Context, n int64) error {
	e, ok := ctx.Value(ctxKey{}).(entry)
	if !ok || n <= 0 {
		return nil
	}
	err := e.b.ChargeBytes(n)
	if e.lenient {
		return nil
	}
	return err
}

// Bucket wraps bkt so that every read under a context with a budget is
// charged to it: a ranged read by its length before it is made (refused
// without reading when over), a whole-object read as its bytes arrive.
func Bucket(bkt objstore.BucketReader) objstore.BucketReader { return &bucket{BucketReader: bkt} }

type bucket struct{ objstore.BucketReader }

func (b *bucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := b.BucketReader.Get(ctx, name)
	if err != nil || From(ctx) == nil {
		return rc, err
	}
	return &countingReader{ReadCloser: rc, ctx: ctx}, nil
}

func (b *bucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := charge(ctx, length); err != nil {
		return nil, err
	}
	return b.BucketReader.GetRange(ctx, name, off, length)
}

type countingReader struct {
	io.ReadCloser
	ctx context.Context
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if cerr := charge(r.ctx, int64(n)); cerr != nil && err == nil {
		return n, cerr
	}
	return n, err
}
