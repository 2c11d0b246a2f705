package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	adhocv1 "github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/adhocprofiles/v1/adhocprofilesv1connect"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	settingsv1 "github.com/grafana/pyroscope/api/gen/proto/go/settings/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/settings/v1/settingsv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/bucket"
	"github.com/hearth-dev/hearth/ingester/compactor"
	"github.com/hearth-dev/hearth/internal/faultbucket"
	"github.com/hearth-dev/hearth/internal/s3test"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// tenantClient is an HTTP client that sends X-Scope-OrgID.
func tenantClient(tenant string) *http.Client {
	return &http.Client{Transport: tenantHeader{tenant, http.DefaultTransport}}
}

type tenantHeader struct {
	tenant string
	next   http.RoundTripper
}

func (o tenantHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Scope-OrgID", o.tenant)
	return o.next.RoundTrip(r)
}

// countTenant is testutil.CountProfiles for a tenant: every profile stored
// (series sum) and the acknowledged ones (profile id selector), in profiles.
func countTenant(t *testing.T, url, tenant string, ids []string, per int64) (all, acked float64) {
	t.Helper()
	q := querierv1connect.NewQuerierServiceClient(tenantClient(tenant), url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	start, end := now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli()
	sum := typesv1.TimeSeriesAggregationType_TIME_SERIES_AGGREGATION_TYPE_SUM
	ss, err := q.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{
		ProfileTypeID: testutil.AllocObjects, LabelSelector: `{service_name="heap"}`, Start: start, End: end, Step: 7200, Aggregation: &sum,
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss.Msg.Series {
		for _, p := range s.Points {
			all += p.Value
		}
	}
	if len(ids) == 0 {
		return all / float64(per), 0
	}
	fg, err := q.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
		ProfileTypeID: testutil.AllocObjects, LabelSelector: `{service_name="heap"}`, Start: start, End: end, ProfileIdSelector: ids,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return all / float64(per), float64(fg.Msg.Flamegraph.Total) / float64(per)
}

// pushTenant pushes n heap profiles as tenant through the nodes round-robin
// and returns the acknowledged ids and the number tried.
func pushTenant(t *testing.T, urls []string, tenant string, raw []byte, n int) (acked []string, err error) {
	for i := 0; i < n; i++ {
		id := uuid.NewString()
		c := pushv1connect.NewPusherServiceClient(tenantClient(tenant), urls[i%len(urls)])
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Push(ctx, connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
			Labels:  []*typesv1.LabelPair{{Name: "service_name", Value: "heap"}, {Name: "instance", Value: tenant}},
			Samples: []*pushv1.RawSample{{RawProfile: raw, ID: id}},
		}}}))
		cancel()
		if err != nil {
			return acked, err
		}
		acked = append(acked, id)
	}
	return acked, nil
}

// deletionStatus is GET /compactor/delete_tenant_status.
func deletionStatus(t *testing.T, internalURL, tenant string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, internalURL+"/compactor/delete_tenant_status", nil)
	req.Header.Set("X-Scope-OrgID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// dataDir is the node's -data-dir.
func (nd *node) dataDir() string {
	for _, a := range nd.args {
		if d, ok := strings.CutPrefix(a, "-data-dir="); ok {
			return d
		}
	}
	return ""
}

// walHolds reports whether a WAL file of the data directory holds s.
func walHolds(t *testing.T, dataDir, s string) []string {
	t.Helper()
	var out []string
	files, _ := filepath.Glob(filepath.Join(dataDir, "wal", "*.wal"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			out = append(out, filepath.Base(f))
		}
	}
	return out
}

// TestTenantDeletion: 3 ingesters (RF 3) on a real S3 server, two tenants
// pushing, one with settings and an ad hoc profile. POST
// /compactor/delete_tenant for one: from then on its queries answer nothing
// and its pushes are refused; its owner's compactor, slowed down by the fault
// proxy's delays on the tenant's objects, is killed with SIGKILL midway
// through the deletion and resumes after its restart; in the end nothing of
// the tenant but its mark is in the bucket, in any head, local block
// directory or WAL, also after a restart; the other tenant's profiles are
// all there, each counted once.
func TestTenantDeletion(t *testing.T) {
	const gone, kept = "tenant-to-delete", "tenant-kept"
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	proxy, err := faultbucket.StartProxy(s3.Endpoint, faultbucket.Config{Seed: 3, MaxDelay: 400 * time.Millisecond, Only: "/" + gone + "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	viaProxy := s3Args(s3)
	for i, a := range viaProxy {
		if strings.HasPrefix(a, "-storage.s3.endpoint=") {
			viaProxy[i] = "-storage.s3.endpoint=" + proxy.Addr
		}
	}
	c := startBucketCluster(t, 3, viaProxy, append(compactionArgs, "-auth.multitenancy-enabled=true", "-compactor.tenant-cleanup-delay=1h")...)
	bkt, err := bucket.New(context.Background(), bucket.Config{Backend: "s3", S3: bucket.S3Config{
		BucketName: s3.Bucket, Endpoint: s3.Endpoint, Region: s3.Region, Insecure: true, ForcePathStyle: true,
	}}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	dir, per := heapCorpus(t)
	raw, err := os.ReadFile(filepath.Join(dir, "heap.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Both tenants push, through blocks (flushed, compacted) and heads.
	var keptAcked []string
	for round := 0; round < 3; round++ {
		for _, tn := range []string{gone, kept} {
			ids, err := pushTenant(t, c.urls(), tn, raw, 15)
			if err != nil {
				t.Fatalf("push %s: %v", tn, err)
			}
			if tn == kept {
				keptAcked = append(keptAcked, ids...)
			}
		}
		if round < 2 {
			for _, u := range c.internalURLs() {
				flush(t, u)
			}
		}
	}
	sc := settingsv1connect.NewSettingsServiceClient(tenantClient(gone), c.urls()[0])
	if _, err := sc.Set(ctx, connect.NewRequest(&settingsv1.SetSettingsRequest{Setting: &settingsv1.Setting{Name: "view", Value: "x", ModifiedAt: time.Now().UnixMilli()}})); err != nil {
		t.Fatal(err)
	}
	ac := adhocprofilesv1connect.NewAdHocProfileServiceClient(tenantClient(gone), c.urls()[0])
	if _, err := ac.Upload(ctx, connect.NewRequest(&adhocv1.AdHocProfilesUploadRequest{Name: "heap.pb.gz", Profile: base64.StdEncoding.EncodeToString(raw)})); err != nil {
		t.Fatal(err)
	}
	if all, _ := countTenant(t, c.urls()[0], gone, nil, per); all != 45 {
		t.Fatalf("before the deletion: %v profiles of %s, want 45", all, gone)
	}
	names, err := compactor.ListTenant(ctx, bkt, gone)
	if err != nil {
		t.Fatal(err)
	}
	before := compactor.CountLeft(gone, names)
	t.Logf("before the deletion: %d objects of %s in the bucket: %+v", len(names), gone, before)
	if before.Blocks == 0 || before.Settings != 1 || before.AdhocProfiles != 1 {
		t.Fatalf("the tenant to delete has %+v in the bucket; want blocks, a setting and an ad hoc profile", before)
	}

	// Delete: every request on the tenant's objects is delayed from now on.
	proxy.SetEnabled(true)
	req, _ := http.NewRequest(http.MethodPost, c.internalURLs()[1]+"/compactor/delete_tenant", nil)
	req.Header.Set("X-Scope-OrgID", gone)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var posted map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&posted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || posted["deletion_in_progress"] != true || len(posted["ingesters_told"].([]any)) != 2 {
		t.Fatalf("POST /compactor/delete_tenant: %s %v", resp.Status, posted)
	}
	// At once: nothing through any node, pushes refused, settings refused.
	for _, u := range c.urls() {
		if all, _ := countTenant(t, u, gone, nil, per); all != 0 {
			t.Fatalf("%s: %v profiles of the deleted tenant answered", u, all)
		}
	}
	_, err = pushTenant(t, c.urls(), gone, raw, 1)
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "being deleted") {
		t.Fatalf("push of the tenant being deleted: %v", err)
	}
	if _, err := sc.Get(ctx, connect.NewRequest(&settingsv1.GetSettingsRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("settings of the tenant being deleted: %v", err)
	}

	// kill -9 the compactor deleting it, midway, and restart it.
	i, stage := c.compacting(30*time.Second, "tenant deletion")
	if i < 0 || stage != "tenant deletion" {
		t.Fatalf("no compactor seen deleting the tenant (stage %q)", stage)
	}
	// Killed once some of the tenant's objects are gone and others are not
	// (the proxy delays each of its requests up to 400 ms): the restart must
	// resume a deletion half done, not start one or find it finished.
	var mid []string
	for n := 0; n < 1200; n++ {
		if mid, err = compactor.ListTenant(ctx, bkt, gone); err != nil {
			t.Fatal(err)
		}
		if len(mid) < len(names) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	c.nodes[i].proc.Kill()
	t.Logf("kill -9 %s while it deletes the tenant: %d of %d objects left", c.nodes[i].id, len(mid), len(names))
	if len(mid) == len(names) {
		t.Fatal("no object of the tenant was deleted in 30 s")
	}
	if len(mid) <= 1 {
		t.Fatal("the deletion was over before the kill")
	}
	time.Sleep(300 * time.Millisecond)
	c.restart(i)
	c.waitRing(3, 3)

	// It resumes: in the end only the mark is left.
	var st map[string]any
	var left []string
	for n := 0; n < 600; n++ {
		left, err = compactor.ListTenant(ctx, bkt, gone)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(left) != 1 || left[0] != block.TenantDeletionMarkPath(gone) {
		t.Fatalf("left of the deleted tenant in the bucket: %q, want only its mark", left)
	}
	st = deletionStatus(t, c.internalURLs()[0], gone)
	t.Logf("status: %v", st)
	if st["tenant_id"] != gone || st["blocks_deleted"] != true || st["deletion_in_progress"] != true ||
		st["blocks"] != 0.0 || st["settings"] != 0.0 || st["adhoc_profiles"] != 0.0 || st["other_objects"] != 0.0 || st["bucket_index"] != false {
		t.Fatalf("status after the deletion: %v", st)
	}
	if m, err := block.ReadTenantDeletionMark(ctx, bkt, gone); err != nil || !m.Deleting() {
		t.Fatalf("mark %+v, %v: want it kept, unfinished within the cleanup delay", m, err)
	}

	// Nothing in a head, a local block directory or the WAL (once the drop's
	// cut is uploaded, the segments before it go), also after a restart.
	for _, nd := range c.nodes {
		if _, err := os.Stat(filepath.Join(nd.dataDir(), "blocks", gone)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: local blocks of the deleted tenant: %v", nd.id, err)
		}
		var in []string
		for n := 0; n < 200; n++ {
			if in = walHolds(t, nd.dataDir(), gone); len(in) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(in) > 0 {
			t.Fatalf("%s: WAL segments %v still hold the deleted tenant", nd.id, in)
		}
		if v := metric(t, nd.proc.URL, `hearth_head_profiles{tenant="`+gone+`"}`); v != 0 {
			t.Fatalf("%s: %v profiles of the deleted tenant in the head", nd.id, v)
		}
	}
	// Restart one: its WAL replays nothing of the tenant; the other tenant is
	// exactly as pushed, through every node.
	c.nodes[0].proc.Kill()
	c.restart(0)
	c.waitRing(3, 3)
	if v := metric(t, c.nodes[0].proc.URL, `hearth_head_profiles{tenant="`+gone+`"}`); v != 0 {
		t.Fatalf("after a restart: %v profiles of the deleted tenant in the head", v)
	}
	for _, u := range c.urls() {
		if all, _ := countTenant(t, u, gone, nil, per); all != 0 {
			t.Fatalf("%s after a restart: %v profiles of the deleted tenant", u, all)
		}
		all, got := countTenant(t, u, kept, keptAcked, per)
		if all != float64(len(keptAcked)) || got != float64(len(keptAcked)) {
			t.Fatalf("%s: the other tenant has %v profiles (%v of the acknowledged), want exactly %d", u, all, got, len(keptAcked))
		}
	}
	if keptNames, err := compactor.ListTenant(ctx, bkt, kept); err != nil || compactor.CountLeft(kept, keptNames).Blocks == 0 {
		t.Fatalf("the other tenant's blocks in the bucket: %q, %v", keptNames, err)
	}
	var deleted float64
	for _, u := range c.urls() {
		deleted += metric(t, u, "hearth_compactor_tenant_deletion_objects_deleted_total")
	}
	t.Logf("objects deleted by the restarted compactors: %.0f (of %d)", deleted, len(names))
}
