package compactor

import (
	"context"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
)

// Bucket operations the compactor counts (hearth_compactor_bucket_operations_total).
const (
	opIter       = "iter"
	opGet        = "get"
	opGetRange   = "get_range"
	opExists     = "exists"
	opAttributes = "attributes"
	opUpload     = "upload"
	opDelete     = "delete"
)

var bucketOps = []string{opIter, opGet, opGetRange, opExists, opAttributes, opUpload, opDelete}

// opsBucket counts the compactor's own bucket requests (the app's bucket
// metrics mix them with the queries' and the shipper's): what a pass costs
// in requests, per instance.
type opsBucket struct {
	objstore.Bucket
	ops *prometheus.CounterVec
}

func (b opsBucket) inc(op string) { b.ops.WithLabelValues(op).Inc() }

func (b opsBucket) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	b.inc(opIter)
	return b.Bucket.Iter(ctx, dir, f, opts...)
}

func (b opsBucket) IterWithAttributes(ctx context.Context, dir string, f func(objstore.IterObjectAttributes) error, opts ...objstore.IterOption) error {
	b.inc(opIter)
	return b.Bucket.IterWithAttributes(ctx, dir, f, opts...)
}

func (b opsBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.inc(opGet)
	return b.Bucket.Get(ctx, name)
}

func (b opsBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	b.inc(opGetRange)
	return b.Bucket.GetRange(ctx, name, off, length)
}

func (b opsBucket) Exists(ctx context.Context, name string) (bool, error) {
	b.inc(opExists)
	return b.Bucket.Exists(ctx, name)
}

func (b opsBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	b.inc(opAttributes)
	return b.Bucket.Attributes(ctx, name)
}

func (b opsBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	b.inc(opUpload)
	return b.Bucket.Upload(ctx, name, r, opts...)
}

func (b opsBucket) Delete(ctx context.Context, name string) error {
	b.inc(opDelete)
	return b.Bucket.Delete(ctx, name)
}
