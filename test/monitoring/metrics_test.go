// Package monitoring checks that every metric the dashboards and alerting rules use
// (docs/monitoring/metrics-used.txt, which `make monitoring` derives from them with
// Prometheus's own parser in hack/monitoring) exists, with the labels used, on the
// /metrics of real processes: two `hearth ingester`s forming a ring, pushed to, queried
// and flushed, and `hearth operator` reconciling Ingesters on a real kube-apiserver
// (envtest).
package monitoring

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// targetLabels are added by Prometheus when it scrapes a target (PodMonitor,
// ServiceMonitor), so a process's own /metrics does not carry them.
var targetLabels = map[string]bool{"namespace": true, "pod": true, "container": true, "job": true, "instance": true, "service": true, "endpoint": true}

// use is one line of metrics-used.txt.
type use struct {
	metric string
	labels []string
}

func readUsed(t *testing.T) []use {
	t.Helper()
	f, err := os.Open(filepath.Join(testutil.RepoRoot(), "docs", "monitoring", "metrics-used.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []use
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		out = append(out, use{fields[0], fields[1:]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("metrics-used.txt lists %d metrics", len(out))
	}
	return out
}

// series maps a sample name (histograms expanded into _bucket, _sum, _count) to the
// label names its samples carry.
type series map[string]map[string]bool

func (s series) add(name string, labels ...string) {
	if s[name] == nil {
		s[name] = map[string]bool{}
	}
	for _, l := range labels {
		s[name][l] = true
	}
}

// scrape reads a /metrics page with Prometheus's text parser into s.
func scrape(t *testing.T, url string, s series) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName())
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				s.add(name+"_bucket", append(labels, "le")...)
				s.add(name+"_sum", labels...)
				s.add(name+"_count", labels...)
			case dto.MetricType_SUMMARY:
				s.add(name, append(labels, "quantile")...)
				s.add(name+"_sum", labels...)
				s.add(name+"_count", labels...)
			default:
				s.add(name, labels...)
			}
		}
	}
}

// missing lists the uses that s lacks: the metric, or a label that is not a target label.
func missing(uses []use, s series) []string {
	var out []string
	for _, u := range uses {
		have, ok := s[u.metric]
		if !ok {
			out = append(out, u.metric+": no such metric")
			continue
		}
		for _, l := range u.labels {
			if !have[l] && !targetLabels[l] {
				var got []string
				for g := range have {
					got = append(got, g)
				}
				sort.Strings(got)
				out = append(out, fmt.Sprintf("%s: no label %q (has %v)", u.metric, l, got))
			}
		}
	}
	return out
}

// The check itself can fail: a metric or label that is not there is reported.
func TestMissingReportsAbsentMetricsAndLabels(t *testing.T) {
	s := series{}
	s.add("a_total", "reason")
	got := missing([]use{{"a_total", []string{"reason", "pod"}}, {"a_total", []string{"tenant"}}, {"b_total", nil}}, s)
	want := []string{`a_total: no label "tenant" (has [reason])`, "b_total: no such metric"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("missing = %q, want %q", got, want)
	}
}

func post(t *testing.T, url, contentType string, body []byte) int {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// ingesterSeries runs two ingesters in one ring, pushes a good and two bad profiles,
// queries (so that one ingester reads the other), scrapes, flushes (a cut and an upload)
// and scrapes again.
func ingesterSeries(t *testing.T) series {
	dir, perProfile := testutil.HeapCorpus(t)
	profile, err := os.ReadFile(filepath.Join(dir, "heap.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	bucket := t.TempDir()
	ml := []int{testutil.FreePort(t), testutil.FreePort(t)}
	var procs [2]*testutil.Process
	done := make(chan struct{})
	for i := range procs {
		args := []string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-storage.filesystem.dir=" + bucket,
			"-memberlist.bind-port=" + strconv.Itoa(ml[i]), "-memberlist.join=127.0.0.1:" + strconv.Itoa(ml[1-i]),
			"-ingester.ring.heartbeat-period=500ms"}
		go func() {
			defer func() { done <- struct{}{} }()
			procs[i] = testutil.StartIngester(t, testutil.FreePort(t), args...)
		}()
	}
	<-done
	<-done
	if procs[0] == nil || procs[1] == nil {
		t.FailNow()
	}

	for i := 0; i < 4; i++ {
		if code := post(t, procs[i%2].URL+"/ingest?name=heap&format=pprof", "application/octet-stream", profile); code != http.StatusOK {
			t.Fatalf("push: %d", code)
		}
	}
	if code := post(t, procs[0].URL+"/ingest?name=heap&format=jfr", "application/octet-stream", []byte("x")); code != http.StatusUnsupportedMediaType {
		t.Errorf("push in an unsupported format: %d, want 415", code)
	}
	if code := post(t, procs[0].URL+"/ingest?name=heap&format=pprof", "application/octet-stream", []byte("not a profile")); code != http.StatusBadRequest {
		t.Errorf("push of a broken profile: %d, want 400", code)
	}
	all, _, err := testutil.CountProfiles(procs[0].URL, nil, perProfile)
	if err != nil {
		t.Fatal(err)
	}
	if all != 4 {
		t.Errorf("query counted %v profiles, want 4", all)
	}

	s := series{}
	for _, p := range procs {
		scrape(t, p.URL+"/metrics", s)
	}
	for _, p := range procs {
		if code := post(t, p.URL+"/ingester/flush?wait=true", "", nil); code != http.StatusOK {
			t.Fatalf("flush: %d", code)
		}
		scrape(t, p.URL+"/metrics", s)
	}
	return s
}

// operatorSeries runs `hearth operator` against a real kube-apiserver and etcd with two
// Ingesters: one it can apply, one Degraded for want of its credentials Secret.
func operatorSeries(t *testing.T) series {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		assets := filepath.Join(testutil.RepoRoot(), "bin", "k8s", "v1.37.2")
		if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
			t.Fatalf("no Kubernetes test binaries: run 'make k8s-bins' (or set KUBEBUILDER_ASSETS): %v", err)
		}
		t.Setenv("KUBEBUILDER_ASSETS", assets)
	}
	logf.SetLogger(logr.Discard()) // envtest's own logging; the operator logs to its process output
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(testutil.RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "hearth-monitoring-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	port := testutil.FreePort(t)
	log := &testutil.SyncBuffer{}
	cmd := exec.Command(testutil.Hearth(t), "operator", "-kubeconfig="+kubeconfig,
		"-metrics-bind-address=127.0.0.1:"+strconv.Itoa(port), "-health-probe-bind-address=0", "-resync=2s")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("hearth operator log:\n%s", log.String())
		}
	})

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(hearthv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := "monitoring"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	ingester := func(name string, store hearthv1.ObjectStorageSpec) *hearthv1.Ingester {
		return &hearthv1.Ingester{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: hearthv1.IngesterSpec{
				Image:         "hearth:dev",
				Storage:       hearthv1.StorageSpec{Size: resource.MustParse("1Gi")},
				ObjectStorage: store,
			},
		}
	}
	for _, ing := range []*hearthv1.Ingester{
		ingester("fine", hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendFilesystem}),
		ingester("no-secret", hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendS3, Bucket: "b",
			CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "absent"}}),
	} {
		if err := c.Create(ctx, ing); err != nil {
			t.Fatal(err)
		}
	}

	// Wait (bounded by go test -timeout) until the operator has reconciled both: the
	// first's StatefulSet applied, the second Degraded.
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("hearth operator exited: %v", err)
		default:
		}
		var fine, degraded hearthv1.Ingester
		if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fine"}, &fine) == nil &&
			c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "no-secret"}, &degraded) == nil &&
			fine.Status.ObservedGeneration == fine.Generation &&
			meta.IsStatusConditionTrue(degraded.Status.Conditions, hearthv1.ConditionDegraded) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	s := series{}
	scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), s)
	return s
}

func TestMetricsUsedExist(t *testing.T) {
	uses := readUsed(t)
	s := ingesterSeries(t)
	for name, labels := range operatorSeries(t) {
		for l := range labels {
			s.add(name, l)
		}
		s.add(name)
	}
	for _, m := range missing(uses, s) {
		t.Errorf("used by the dashboards or alerts, not exposed: %s", m)
	}
}
