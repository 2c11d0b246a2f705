package bucket

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/internal/s3test"
)

func TestValidate(t *testing.T) {
	t.Setenv("AZURE_STORAGE_ACCOUNT", "")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	for _, tc := range []struct {
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{Config{Backend: "filesystem", Filesystem: FilesystemConfig{Dir: "/x"}}, ""},
		{Config{Backend: "filesystem"}, "storage.filesystem.dir"},
		{Config{Backend: "s3", S3: S3Config{Endpoint: "h:1"}}, "storage.s3.bucket-name"},
		{Config{Backend: "s3", S3: S3Config{BucketName: "b"}}, "storage.s3.endpoint"},
		{Config{Backend: "s3", S3: S3Config{BucketName: "b", Endpoint: "h:1"}}, ""},
		{Config{Backend: "gcs"}, "storage.gcs.bucket-name"},
		{Config{Backend: "azure", Azure: AzureConfig{AccountName: "a"}}, "storage.azure.container-name"},
		{Config{Backend: "azure", Azure: AzureConfig{ContainerName: "c"}}, "storage.azure.account-name"},
		{Config{Backend: "swift"}, `storage.backend "swift"`},
		{Config{}, `storage.backend ""`},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one naming %q", tc.cfg, err, tc.want)
		}
	}
}

func TestRegisterFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-storage.backend=s3", "-storage.s3.bucket-name=b", "-storage.s3.force-path-style", "-storage.operation-timeout=7s"}); err != nil {
		t.Fatal(err)
	}
	if c.Backend != "s3" || c.S3.BucketName != "b" || !c.S3.ForcePathStyle || c.OperationTimeout != 7*time.Second {
		t.Fatalf("%+v", c)
	}
	var d Config
	d.RegisterFlags(flag.NewFlagSet("y", flag.ContinueOnError))
	if d.Backend != "filesystem" || d.OperationTimeout != DefaultOperationTimeout {
		t.Fatalf("defaults %+v", d)
	}
}

func TestFilesystem(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	bkt, err := New(context.Background(), Config{Backend: "filesystem", Filesystem: FilesystemConfig{Dir: dir}}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	exercise(t, bkt)
	// Uploads are atomic: no temporary files are left behind.
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "hearth_objstore_bucket_operations_total") {
		t.Fatalf("bucket metrics not registered: %v", names)
	}
}

// exercise runs the operations the shipper and the block readers use.
func exercise(t *testing.T, bkt objstore.Bucket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	objs := map[string]string{"t/01A/meta.json": `{"v":1}`, "t/01A/index.bin": "0123456789", "u/01B/meta.json": "{}"}
	for name, data := range objs {
		if err := bkt.Upload(ctx, name, strings.NewReader(data)); err != nil {
			t.Fatalf("upload %s: %v", name, err)
		}
	}
	// Overwrite replaces.
	if err := bkt.Upload(ctx, "t/01A/meta.json", strings.NewReader(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	objs["t/01A/meta.json"] = `{"v":2}`
	for name, want := range objs {
		rc, err := bkt.Get(ctx, name)
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != want {
			t.Fatalf("get %s = %q, %v; want %q", name, got, err, want)
		}
	}
	rc, err := bkt.GetRange(ctx, "t/01A/index.bin", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != "234" {
		t.Fatalf("GetRange = %q, %v", got, err)
	}
	attrs, err := bkt.Attributes(ctx, "t/01A/index.bin")
	if err != nil || attrs.Size != 10 {
		t.Fatalf("Attributes = %+v, %v", attrs, err)
	}
	var tenants []string
	if err := bkt.Iter(ctx, "", func(name string) error { tenants = append(tenants, name); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(tenants)
	if !slices.Equal(tenants, []string{"t/", "u/"}) {
		t.Fatalf("Iter root = %v", tenants)
	}
	var all []string
	if err := bkt.Iter(ctx, "t/", func(name string) error { all = append(all, name); return nil }, objstore.WithRecursiveIter()); err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	if !slices.Equal(all, []string{"t/01A/index.bin", "t/01A/meta.json"}) {
		t.Fatalf("recursive Iter = %v", all)
	}
	if ok, err := bkt.Exists(ctx, "t/01A/meta.json"); err != nil || !ok {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if ok, err := bkt.Exists(ctx, "t/nope/meta.json"); err != nil || ok {
		t.Fatalf("Exists(missing) = %v, %v", ok, err)
	}
	if _, err := bkt.Attributes(ctx, "t/nope/meta.json"); err == nil || !bkt.IsObjNotFoundErr(err) {
		t.Fatalf("Attributes(missing): %v (not-found: %v)", err, bkt.IsObjNotFoundErr(err))
	}
	if err := bkt.Delete(ctx, "u/01B/meta.json"); err != nil {
		t.Fatal(err)
	}
	if ok, err := bkt.Exists(ctx, "u/01B/meta.json"); err != nil || ok {
		t.Fatalf("Exists after delete = %v, %v", ok, err)
	}
}

func TestS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	cfg := Config{Backend: "s3", S3: S3Config{BucketName: srv.Bucket, Endpoint: srv.Endpoint, Region: srv.Region, Insecure: true, ForcePathStyle: true}}
	bkt, err := New(context.Background(), cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	exercise(t, bkt)

	// Credentials come from the environment: a wrong secret is refused.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	bad, err := New(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bad.Upload(ctx, "x", strings.NewReader("x")); err == nil {
		t.Fatal("upload with a wrong secret succeeded")
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, err := New(context.Background(), cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Fatalf("access key without secret: %v", err)
	}
}

func TestAzureAndGCSConstruct(t *testing.T) {
	// Construction does not contact the service.
	t.Setenv("AZURE_STORAGE_KEY", "c2VjcmV0LWtleQ==")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	az, err := New(context.Background(), Config{Backend: "azure", Azure: AzureConfig{AccountName: "acct", ContainerName: "c"}}, nil, nil)
	if err != nil {
		t.Fatalf("azure: %v", err)
	}
	if az.Provider() != objstore.AZURE {
		t.Fatalf("azure provider %s", az.Provider())
	}

	key := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(key, []byte(`{"type":"service_account","project_id":"p","client_email":"x@p.iam.gserviceaccount.com","private_key_id":"1","private_key":"-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n","token_uri":"http://127.0.0.1:1/token"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
	gcs, err := New(context.Background(), Config{Backend: "gcs", GCS: GCSConfig{BucketName: "b"}}, nil, nil)
	if err != nil {
		t.Fatalf("gcs: %v", err)
	}
	defer gcs.Close()
	if gcs.Provider() != objstore.GCS {
		t.Fatalf("gcs provider %s", gcs.Provider())
	}
}

// slowBucket blocks uploads until the context ends and returns bodies that fail once
// their context is canceled.
type slowBucket struct {
	objstore.Bucket
}

func (slowBucket) Upload(ctx context.Context, _ string, _ io.Reader, _ ...objstore.ObjectUploadOption) error {
	<-ctx.Done()
	return ctx.Err()
}

func (slowBucket) Get(ctx context.Context, _ string) (io.ReadCloser, error) {
	return io.NopCloser(ctxBody{ctx: ctx, r: bytes.NewReader([]byte("body"))}), nil
}

type ctxBody struct {
	ctx context.Context
	r   io.Reader
}

func (b ctxBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.r.Read(p)
}

func TestTimeout(t *testing.T) {
	b := WithTimeout(slowBucket{objstore.NewInMemBucket()}, 20*time.Millisecond)
	err := b.Upload(context.Background(), "x", strings.NewReader("x"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 20ms") {
		t.Fatalf("upload: %v", err)
	}
	// The caller's own cancellation is not reported as a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Upload(ctx, "x", strings.NewReader("x")); !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "timed out") {
		t.Fatalf("canceled upload: %v", err)
	}
	// A body returned in time stays readable after the timeout has passed.
	rc, err := b.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(40 * time.Millisecond)
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != "body" {
		t.Fatalf("body after the timeout: %q, %v", got, err)
	}
	rc.Close()
}
