package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/bucket"
)

// block is a fake block: the shipper does not look inside files.
type block struct {
	tenant string
	id     ulid.ULID
	dir    string
	files  map[string][]byte // relative slash path -> content, meta.json included
}

var entropy = &ulid.LockedMonotonicReader{MonotonicReader: ulid.Monotonic(rand.New(rand.NewSource(1)), 0)}

func newULID(t time.Time) ulid.ULID {
	return ulid.MustNew(ulid.Timestamp(t), entropy)
}

// makeBlock writes a block the way ingester/block does: in <ULID>.tmp, then renamed.
func makeBlock(t testing.TB, root, tenant string, created time.Time) block {
	t.Helper()
	id := newULID(created)
	b := block{tenant: tenant, id: id, dir: filepath.Join(root, tenant, id.String()), files: map[string][]byte{
		"index.bin":        []byte("index of " + id.String()),
		"profiles.parquet": bytes.Repeat([]byte("p"+id.String()), 100),
		"symbols.bin":      []byte("symbols of " + id.String()),
		"sub/extra.bin":    []byte("nested file"),
		MetaFile:           []byte(fmt.Sprintf(`{"ulid":%q,"tenant":%q}`, id.String(), tenant)),
	}}
	tmp := b.dir + ".tmp"
	for name, data := range b.files {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, b.dir); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b block) size() int64 {
	var n int64
	for _, d := range b.files {
		n += int64(len(d))
	}
	return n
}

func (b block) marked() bool {
	_, ok := readMarker(b.dir)
	return ok
}

func newFSBucket(t testing.TB) (objstore.Bucket, string) {
	t.Helper()
	dir := t.TempDir()
	bkt, err := bucket.New(context.Background(), bucket.Config{Backend: "filesystem", Filesystem: bucket.FilesystemConfig{Dir: dir}}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bkt.Close() })
	return bkt, dir
}

// requireInBucket checks every file of b is in the bucket with the right content.
func requireInBucket(t testing.TB, bkt objstore.Bucket, b block) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, want := range b.files {
		rc, err := bkt.Get(ctx, b.tenant+"/"+b.id.String()+"/"+name)
		if err != nil {
			t.Fatalf("block %s/%s: %s: %v", b.tenant, b.id, name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("block %s/%s: %s: got %d bytes, want %d", b.tenant, b.id, name, len(got), len(want))
		}
	}
}

// requireNoHalfBlocks checks that every block whose meta.json is in the bucket has all
// its files there.
func requireNoHalfBlocks(t testing.TB, bkt objstore.Bucket, blocks []block) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range blocks {
		prefix := b.tenant + "/" + b.id.String() + "/"
		ok, err := bkt.Exists(ctx, prefix+MetaFile)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		for name := range b.files {
			ok, err := bkt.Exists(ctx, prefix+name)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				t.Fatalf("block %s has meta.json in the bucket but not %s", prefix, name)
			}
		}
	}
}

var errInjected = errors.New("injected bucket failure")

// testBucket wraps a bucket: it checks that meta.json is uploaded only after every
// other file of the block is in the bucket, counts uploads, and can fail uploads
// after a number of successes (or all of them) until healed.
type testBucket struct {
	objstore.Bucket
	blocksDir string

	mu         sync.Mutex
	uploads    []string
	failAfter  int // successful uploads allowed before failing; <0: never fail
	failed     int
	violations []string
}

func newTestBucket(inner objstore.Bucket, blocksDir string, failAfter int) *testBucket {
	return &testBucket{Bucket: inner, blocksDir: blocksDir, failAfter: failAfter}
}

func (b *testBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	b.mu.Lock()
	if b.failAfter >= 0 && len(b.uploads) >= b.failAfter {
		b.failed++
		b.mu.Unlock()
		return fmt.Errorf("upload %s: %w", name, errInjected)
	}
	b.mu.Unlock()
	if strings.HasSuffix(name, "/"+MetaFile) {
		b.checkComplete(ctx, strings.TrimSuffix(name, MetaFile))
	}
	if err := b.Bucket.Upload(ctx, name, r, opts...); err != nil {
		return err
	}
	b.mu.Lock()
	b.uploads = append(b.uploads, name)
	b.mu.Unlock()
	return nil
}

// checkComplete records a violation unless every local file of the block is in the bucket.
func (b *testBucket) checkComplete(ctx context.Context, prefix string) {
	local := filepath.Join(b.blocksDir, filepath.FromSlash(prefix))
	files, err := blockFiles(local)
	if err != nil {
		b.violate(fmt.Sprintf("listing %s: %v", local, err))
		return
	}
	if len(files) == 0 {
		b.violate("no files besides meta.json in " + local)
	}
	for _, f := range files {
		ok, err := b.Bucket.Exists(ctx, prefix+f)
		if err != nil || !ok {
			b.violate(fmt.Sprintf("meta.json of %s uploaded before %s (exists=%v err=%v)", prefix, f, ok, err))
		}
	}
}

func (b *testBucket) violate(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.violations = append(b.violations, s)
}

func (b *testBucket) heal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failAfter = -1
}

func (b *testBucket) uploaded() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.uploads...)
}

func (b *testBucket) requireNoViolations(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.violations) > 0 {
		t.Fatalf("meta.json order violated:\n%s", strings.Join(b.violations, "\n"))
	}
}

// runShipper starts Run and returns a stop function that cancels it and waits.
func runShipper(t testing.TB, s *Shipper) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond every 10ms for at most 30s (a bound, not a timed assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after 30s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func flush(t testing.TB, s *Shipper) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
