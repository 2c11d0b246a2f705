package controllers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// Timeouts of the calls a reconcile makes to ingester pods: a reconcile never waits on a
// pod (or, through it, on the bucket) longer than one of these, and calls to several pods
// run in parallel. Long operations (the deletion flush) run in the background and are
// observed by later reconciles (see operations).
const (
	podCallTimeout  = 5 * time.Second
	ringCallTimeout = 2 * time.Second
)

// callPod runs one call to a pod with a timeout and records its result and latency.
func callPod(ctx context.Context, call string, timeout time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	podCallDuration.WithLabelValues(call).Observe(time.Since(start).Seconds())
	podCallsTotal.WithLabelValues(call, callResult(ctx, err)).Inc()
	return err
}

func callResult(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}

// inParallel calls fn for every item at once and returns the errors in item order.
func inParallel[T any](items []T, fn func(T) error) []error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Go(func() { errs[i] = fn(it) })
	}
	wg.Wait()
	return errs
}

// operation is a long call to one pod running in the background (a flush that waits for
// the upload): started by one reconcile, observed by the next ones.
type operation struct {
	started, finished time.Time
	done              bool
	err               error
}

// operations tracks the background operations by key ("<namespace>/<ingester>/<pod>/<uid>":
// a recreated pod is a new key). They live in the operator's memory only: a new operator
// (a restart, another leader) finds none and starts them again, which is safe because
// every one of them is idempotent (a second flush of an already flushed head is quick).
type operations struct {
	mu  sync.Mutex
	ops map[string]*operation
	// Timeout bounds one operation (its context's deadline).
	Timeout time.Duration
}

// get returns a copy of the operation under key, or nil.
func (o *operations) get(key string) *operation {
	o.mu.Lock()
	defer o.mu.Unlock()
	op := o.ops[key]
	if op == nil {
		return nil
	}
	c := *op
	return &c
}

// start runs fn in the background under key (replacing a finished operation). call names
// it in the pod call metrics.
func (o *operations) start(key, call string, fn func(context.Context) error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ops == nil {
		o.ops = map[string]*operation{}
	}
	if op := o.ops[key]; op != nil && !op.done {
		return
	}
	op := &operation{started: time.Now()}
	o.ops[key] = op
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	go func() {
		err := callPod(context.Background(), call, timeout, fn)
		o.mu.Lock()
		defer o.mu.Unlock()
		op.done, op.err, op.finished = true, err, time.Now()
	}()
}

// forget drops the finished operations whose key starts with prefix (an Ingester's, once
// it is gone); running ones end on their own and are dropped by a later forget.
func (o *operations) forget(prefix string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, op := range o.ops {
		if strings.HasPrefix(k, prefix) && op.done {
			delete(o.ops, k)
		}
	}
}
