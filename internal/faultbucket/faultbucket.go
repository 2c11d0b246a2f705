// Package faultbucket wraps an objstore.Bucket with the faults object storage
// shows in production, for tests: errors that look like 5xx answers, bodies
// cut off midway on Get and GetRange, delays, and uploads that land but
// answer an error. Faults are drawn from a seeded source, so a failing test
// replays with the same seed; Rules and Hook target one object or operation.
package faultbucket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thanos-io/objstore"
)

// Op is a bucket operation.
type Op string

// Operations a fault can hit.
const (
	OpGet        Op = "get"
	OpGetRange   Op = "get_range"
	OpUpload     Op = "upload"
	OpDelete     Op = "delete"
	OpExists     Op = "exists"
	OpIter       Op = "iter"
	OpAttributes Op = "attributes"
)

// Fault is what happens to one call.
type Fault int

// Faults.
const (
	None Fault = iota
	// Error: the call fails before reaching the bucket (a 5xx answer).
	Error
	// CutBody: Get/GetRange succeed but the body ends early with an error
	// (a connection reset midway).
	CutBody
	// LandedError: Upload/Delete reach the bucket, then answer an error (the
	// answer was lost).
	LandedError
)

// ErrInjected is the error of every injected fault (wrapped with the operation
// and object); it is not "object not found".
var ErrInjected = errors.New("faultbucket: injected 503 Service Unavailable")

// Config sets the fault probabilities, each in [0, 1].
type Config struct {
	Seed uint64
	// ErrorRate: a call fails with ErrInjected without reaching the bucket.
	ErrorRate float64
	// CutRate: a Get/GetRange body is cut off after a random share of its bytes.
	CutRate float64
	// LandedErrorRate: an Upload/Delete takes effect and then answers ErrInjected.
	LandedErrorRate float64
	// MaxDelay: every call waits a random time up to this first (0: none).
	MaxDelay time.Duration
	// Only restricts the random faults to object names containing it ("" : all).
	Only string
}

// Bucket is the wrapper. Its zero faults (Config{}) pass every call through.
type Bucket struct {
	objstore.Bucket

	mu   sync.Mutex
	cfg  Config
	rng  *rand.Rand
	on   bool
	hook func(op Op, name string) Fault

	injected atomic.Int64
	calls    atomic.Int64
}

// Wrap returns b with faults as cfg says, switched on.
func Wrap(b objstore.Bucket, cfg Config) *Bucket {
	return &Bucket{Bucket: b, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), on: true}
}

// SetEnabled switches the random faults on or off (the hook stays).
func (b *Bucket) SetEnabled(on bool) {
	b.mu.Lock()
	b.on = on
	b.mu.Unlock()
}

// SetHook installs a function deciding the fault of each call before the
// random draw (None: draw at random). nil removes it.
func (b *Bucket) SetHook(h func(op Op, name string) Fault) {
	b.mu.Lock()
	b.hook = h
	b.mu.Unlock()
}

// Injected is the number of faults injected so far; Calls the calls seen.
func (b *Bucket) Injected() int64 { return b.injected.Load() }

// Calls is the number of calls seen.
func (b *Bucket) Calls() int64 { return b.calls.Load() }

// decide draws the fault of one call and its delay.
func (b *Bucket) decide(op Op, name string) (Fault, time.Duration, float64) {
	b.calls.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	var f Fault
	if b.hook != nil {
		f = b.hook(op, name)
	}
	var delay time.Duration
	cut := b.rng.Float64()
	if b.on && (b.cfg.Only == "" || strings.Contains(name, b.cfg.Only)) {
		if b.cfg.MaxDelay > 0 {
			delay = time.Duration(b.rng.Int64N(int64(b.cfg.MaxDelay)))
		}
		if f == None {
			f = pick(b.rng.Float64(), op, b.cfg)
		}
	}
	if f != None {
		b.injected.Add(1)
	}
	return f, delay, cut
}

// pick maps a uniform draw u to the fault of an operation.
func pick(u float64, op Op, cfg Config) Fault {
	if u < cfg.ErrorRate {
		return Error
	}
	u -= cfg.ErrorRate
	switch op {
	case OpGet, OpGetRange:
		if u < cfg.CutRate {
			return CutBody
		}
	case OpUpload, OpDelete:
		if u < cfg.LandedErrorRate {
			return LandedError
		}
	}
	return None
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func injected(op Op, name string) error { return fmt.Errorf("%s %s: %w", op, name, ErrInjected) }

// Get implements objstore.Bucket.
func (b *Bucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return b.read(ctx, OpGet, name, func() (io.ReadCloser, error) { return b.Bucket.Get(ctx, name) })
}

// GetRange implements objstore.Bucket.
func (b *Bucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return b.read(ctx, OpGetRange, name, func() (io.ReadCloser, error) { return b.Bucket.GetRange(ctx, name, off, length) })
}

func (b *Bucket) read(ctx context.Context, op Op, name string, get func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	f, d, cut := b.decide(op, name)
	if err := sleep(ctx, d); err != nil {
		return nil, err
	}
	if f == Error {
		return nil, injected(op, name)
	}
	rc, err := get()
	if err != nil || f != CutBody {
		return rc, err
	}
	// Read it all to know its size, then hand back a share and an error.
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	n := int(float64(len(body)) * cut)
	return &cutReader{data: body[:n], err: injected(op, name)}, nil
}

type cutReader struct {
	data []byte
	err  error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *cutReader) Close() error { return nil }

// Upload implements objstore.Bucket.
func (b *Bucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	f, d, _ := b.decide(OpUpload, name)
	if err := sleep(ctx, d); err != nil {
		return err
	}
	if f == Error {
		return injected(OpUpload, name)
	}
	if err := b.Bucket.Upload(ctx, name, r, opts...); err != nil {
		return err
	}
	if f == LandedError {
		return injected(OpUpload, name)
	}
	return nil
}

// Delete implements objstore.Bucket.
func (b *Bucket) Delete(ctx context.Context, name string) error {
	f, d, _ := b.decide(OpDelete, name)
	if err := sleep(ctx, d); err != nil {
		return err
	}
	if f == Error {
		return injected(OpDelete, name)
	}
	if err := b.Bucket.Delete(ctx, name); err != nil {
		return err
	}
	if f == LandedError {
		return injected(OpDelete, name)
	}
	return nil
}

// Exists implements objstore.Bucket.
func (b *Bucket) Exists(ctx context.Context, name string) (bool, error) {
	f, d, _ := b.decide(OpExists, name)
	if err := sleep(ctx, d); err != nil {
		return false, err
	}
	if f == Error {
		return false, injected(OpExists, name)
	}
	return b.Bucket.Exists(ctx, name)
}

// Attributes implements objstore.Bucket.
func (b *Bucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	f, d, _ := b.decide(OpAttributes, name)
	if err := sleep(ctx, d); err != nil {
		return objstore.ObjectAttributes{}, err
	}
	if f == Error {
		return objstore.ObjectAttributes{}, injected(OpAttributes, name)
	}
	return b.Bucket.Attributes(ctx, name)
}

// Iter implements objstore.Bucket. A failed listing fails before the first entry.
func (b *Bucket) Iter(ctx context.Context, dir string, fn func(string) error, opts ...objstore.IterOption) error {
	f, d, _ := b.decide(OpIter, dir)
	if err := sleep(ctx, d); err != nil {
		return err
	}
	if f == Error {
		return injected(OpIter, dir)
	}
	return b.Bucket.Iter(ctx, dir, fn, opts...)
}

// IterWithAttributes implements objstore.Bucket.
func (b *Bucket) IterWithAttributes(ctx context.Context, dir string, fn func(objstore.IterObjectAttributes) error, opts ...objstore.IterOption) error {
	f, d, _ := b.decide(OpIter, dir)
	if err := sleep(ctx, d); err != nil {
		return err
	}
	if f == Error {
		return injected(OpIter, dir)
	}
	return b.Bucket.IterWithAttributes(ctx, dir, fn, opts...)
}

// IsObjNotFoundErr implements objstore.Bucket: injected faults are never "not found".
func (b *Bucket) IsObjNotFoundErr(err error) bool {
	return !errors.Is(err, ErrInjected) && b.Bucket.IsObjNotFoundErr(err)
}
