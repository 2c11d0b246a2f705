package bucket

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/thanos-io/objstore"
)

// WithTimeout wraps b so that every operation is bounded by d: Upload, Delete, Exists,
// Attributes and Iter as a whole; Get and GetRange until the call returns (reading the
// returned body is bounded only by the caller's context, so large objects may stream
// for longer). A timed-out operation returns an error wrapping context.DeadlineExceeded.
func WithTimeout(b objstore.Bucket, d time.Duration) objstore.Bucket {
	return &timeoutBucket{b: b, d: d}
}

type timeoutBucket struct {
	b objstore.Bucket
	d time.Duration
}

// wrap names the timeout when it, not the caller's context, ended the operation.
func (t *timeoutBucket) wrap(ctx, parent context.Context, err error, op, name string) error {
	if err != nil && ctx.Err() != nil && parent.Err() == nil {
		return fmt.Errorf("%s %s: timed out after %s: %w (%w)", op, name, t.d, context.DeadlineExceeded, err)
	}
	return err
}

func (t *timeoutBucket) Provider() objstore.ObjProvider { return t.b.Provider() }
func (t *timeoutBucket) Name() string                   { return t.b.Name() }
func (t *timeoutBucket) Close() error                   { return t.b.Close() }
func (t *timeoutBucket) IsObjNotFoundErr(err error) bool {
	return t.b.IsObjNotFoundErr(err)
}
func (t *timeoutBucket) IsAccessDeniedErr(err error) bool {
	return t.b.IsAccessDeniedErr(err)
}
func (t *timeoutBucket) SupportedIterOptions() []objstore.IterOptionType {
	return t.b.SupportedIterOptions()
}

func (t *timeoutBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	tctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.wrap(tctx, ctx, t.b.Upload(tctx, name, r, opts...), "upload", name)
}

func (t *timeoutBucket) Delete(ctx context.Context, name string) error {
	tctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.wrap(tctx, ctx, t.b.Delete(tctx, name), "delete", name)
}

func (t *timeoutBucket) Exists(ctx context.Context, name string) (bool, error) {
	tctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	ok, err := t.b.Exists(tctx, name)
	return ok, t.wrap(tctx, ctx, err, "exists", name)
}

func (t *timeoutBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	tctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	a, err := t.b.Attributes(tctx, name)
	return a, t.wrap(tctx, ctx, err, "attributes", name)
}

func (t *timeoutBucket) Iter(ctx context.Context, dir string, f func(string) error, options ...objstore.IterOption) error {
	tctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.wrap(tctx, ctx, t.b.Iter(tctx, dir, f, options...), "iter", dir)
}

func (t *timeoutBucket) IterWithAttributes(ctx context.Context, dir string, f func(objstore.IterObjectAttributes) error, options ...objstore.IterOption) error {
	tctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.wrap(tctx, ctx, t.b.IterWithAttributes(tctx, dir, f, options...), "iter", dir)
}

func (t *timeoutBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return t.get(ctx, name, func(ctx context.Context) (io.ReadCloser, error) { return t.b.Get(ctx, name) })
}

func (t *timeoutBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return t.get(ctx, name, func(ctx context.Context) (io.ReadCloser, error) { return t.b.GetRange(ctx, name, off, length) })
}

// get bounds the call by the timeout but leaves the returned body readable until it
// is closed (the context stays alive until then).
func (t *timeoutBucket) get(ctx context.Context, name string, fn func(context.Context) (io.ReadCloser, error)) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(t.d, func() { cancel(context.DeadlineExceeded) })
	rc, err := fn(ctx)
	stopped := timer.Stop()
	if err != nil {
		cancel(nil)
		if !stopped && ctx.Err() != nil {
			return nil, fmt.Errorf("get %s: timed out after %s: %w", name, t.d, context.DeadlineExceeded)
		}
		return nil, err
	}
	if !stopped {
		// The timer fired as the call returned: the body's context is already canceled.
		cancel(nil)
		_ = rc.Close()
		return nil, fmt.Errorf("get %s: timed out after %s: %w", name, t.d, context.DeadlineExceeded)
	}
	return &cancelOnClose{ReadCloser: rc, cancel: func() { cancel(nil) }}, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// ObjectSize keeps objstore.TryToGetSize working through the wrapper.
func (c *cancelOnClose) ObjectSize() (int64, error) {
	return objstore.TryToGetSize(c.ReadCloser)
}
