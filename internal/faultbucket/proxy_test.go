package faultbucket

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/internal/s3test"
)

// TestProxyOnS3: through the proxy a real S3 client works with faults off;
// with cut bodies a read fails midway; with landed errors an upload answers
// an error yet the object is in the bucket.
func TestProxyOnS3(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	p, err := StartProxy(s3.Endpoint, Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	cfg := bucket.Config{Backend: "s3", S3: bucket.S3Config{BucketName: s3.Bucket, Endpoint: p.Addr, Region: s3.Region, Insecure: true, ForcePathStyle: true}}
	bkt, err := bucket.New(ctx, cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	body := bytes.Repeat([]byte("abcdefgh"), 64<<10) // 512 KiB
	if err := bkt.Upload(ctx, "t/obj", bytes.NewReader(body)); err != nil {
		t.Fatalf("upload through the proxy: %v", err)
	}
	rc, err := bkt.Get(ctx, "t/obj")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}

	p.mu.Lock()
	p.cfg = Config{CutRate: 1}
	p.mu.Unlock()
	p.SetEnabled(true)
	rc, err = bkt.Get(ctx, "t/obj")
	if err == nil {
		got, err = io.ReadAll(rc)
		rc.Close()
	}
	if err == nil {
		t.Fatalf("a cut body read %d of %d bytes without an error", len(got), len(body))
	}

	p.mu.Lock()
	p.cfg = Config{LandedErrorRate: 1}
	p.mu.Unlock()
	if err := bkt.Upload(ctx, "t/landed", strings.NewReader("x")); err == nil {
		t.Fatal("an upload answered 500 succeeded")
	}
	p.SetEnabled(false)
	if ok, err := bkt.Exists(ctx, "t/landed"); err != nil || !ok {
		t.Fatalf("the landed upload is not in the bucket: %v %v", ok, err)
	}
	req, errs, cut, landed := p.Stats()
	t.Logf("proxy: %d requests, %d errors, %d cut, %d landed-then-500", req, errs, cut, landed)
	if cut == 0 || landed == 0 {
		t.Fatal("no faults counted")
	}
}
