package shipper

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/internal/s3test"
)

func newS3Bucket(t *testing.T, srv *s3test.Server) objstore.Bucket {
	t.Helper()
	srv.SetEnv(t)
	bkt, err := bucket.New(context.Background(), bucket.Config{
		Backend: "s3",
		S3: bucket.S3Config{
			BucketName: srv.Bucket, Endpoint: srv.Endpoint, Region: srv.Region,
			Insecure: true, ForcePathStyle: true,
		},
		OperationTimeout: 2 * time.Second, // the s3 client retries a refused connection for several seconds
	}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bkt.Close() })
	return bkt
}

// TestS3Outage ships blocks to a real S3 server, stops the server, keeps enqueueing,
// sees the failures counted and the shipper unhealthy with a reason, restarts the
// server and sees every block arrive, meta.json always last.
func TestS3Outage(t *testing.T) {
	srv := s3test.Start(t)
	inner := newS3Bucket(t, srv)
	dir := t.TempDir()
	bkt := newTestBucket(inner, dir, -1)
	opts := fastOpts(dir)
	opts.Bucket = bkt
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	s := New(opts)
	runShipper(t, s)

	first := makeBlock(t, dir, "tenant-a", time.Now())
	if err := s.Enqueue(first.tenant, first.dir); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	requireInBucket(t, inner, first)

	srv.Stop()
	var during []block
	for _, tenant := range []string{"tenant-a", "tenant-b", "tenant-b"} {
		b := makeBlock(t, dir, tenant, time.Now())
		if err := s.Enqueue(b.tenant, b.dir); err != nil {
			t.Fatal(err)
		}
		during = append(during, b)
	}
	waitFor(t, "failed uploads while the server is down", func() bool { return counter(s.metrics.failures) >= 2 })
	ok, reason := s.Healthy()
	if ok || !strings.Contains(reason, "bucket unreachable for") || !strings.Contains(reason, "3 blocks waiting to upload") {
		t.Fatalf("Healthy() during the outage = %v, %q", ok, reason)
	}
	if s.PendingBlocks() != 3 {
		t.Fatalf("%d blocks pending during the outage, want 3", s.PendingBlocks())
	}
	for _, b := range during {
		if b.marked() {
			t.Fatalf("%s marked uploaded while the server is down", b.dir)
		}
	}

	srv.Restart()
	flush(t, s)
	if ok, reason := s.Healthy(); !ok {
		t.Fatalf("unhealthy after the server came back: %s", reason)
	}
	requireNoHalfBlocks(t, inner, during)
	for _, b := range append(during, first) {
		requireInBucket(t, inner, b)
		if !b.marked() {
			t.Fatalf("%s not marked", b.dir)
		}
	}
	bkt.requireNoViolations(t)

	// The objects are where a plain S3 client expects them.
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.StatObject(ctx, srv.Bucket, "tenant-b/"+during[2].id.String()+"/"+MetaFile, minio.StatObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}
