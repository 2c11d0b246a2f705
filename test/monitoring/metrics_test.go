// Package monitoring checks that every metric the dashboards and alerting rules use
// (docs/monitoring/metrics-used.txt, which `make monitoring` derives from them with
// Prometheus's own parser in hack/monitoring) exists, with the labels used, on the
// /metrics of real processes: two `hearth ingester`s forming a ring, pushed to, queried,
// flushed and compacting (with compactor settings in seconds), and `hearth operator`
// reconciling Ingesters on a real kube-apiserver (envtest) with kube-controller-manager's
// StatefulSet controller: a rollout that replaces a pod, failing pod calls, a failing apply.
package monitoring

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
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

// compactionArgs make the ingesters' compactors run within seconds (the values of
// test/integration/compaction_test.go): both ingesters upload a block of the same range,
// and a job merges them.
var compactionArgs = []string{
	"-ingester.max-block-duration=2s",
	"-compactor.block-ranges=5s,20s", "-compactor.compaction-interval=1s",
	"-compactor.first-level-compaction-wait-period=4s", "-compactor.deletion-delay=5s",
}

// sampleSum is the sum of the samples of a counter or gauge on a /metrics page whose
// labels include want.
func sampleSum(t *testing.T, url, name string, want map[string]string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
metrics:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue metrics
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		}
	}
	return sum, found
}

// ingesterSeries runs two ingesters in one ring, pushes a good and two bad profiles,
// queries (so that one ingester reads the other), scrapes, flushes (a cut and an upload),
// waits for a compaction job and a compactor failure, and scrapes again.
func ingesterSeries(t *testing.T) series {
	dir, perProfile := testutil.HeapCorpus(t)
	profile, err := os.ReadFile(filepath.Join(dir, "heap.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	bucket := t.TempDir()
	// A runtime config, so that its reload metrics exist.
	runtimeConfig := filepath.Join(t.TempDir(), "runtime.yaml")
	if err := os.WriteFile(runtimeConfig, []byte("overrides:\n  monitoring:\n    max_series_per_tenant: 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ml := []int{testutil.FreePort(t), testutil.FreePort(t)}
	var procs [2]*testutil.Process
	done := make(chan struct{})
	for i := range procs {
		args := []string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-storage.filesystem.dir=" + bucket,
			"-memberlist.bind-port=" + strconv.Itoa(ml[i]), "-memberlist.join=127.0.0.1:" + strconv.Itoa(ml[1-i]),
			"-ingester.ring.heartbeat-period=500ms", "-runtime-config.file=" + runtimeConfig}
		args = append(args, compactionArgs...)
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

	// Each must see the other ACTIVE before the query, or it reads only itself.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		seen := 0
		for _, p := range procs {
			if n, _ := sampleSum(t, p.URL+"/metrics", "ring_members", map[string]string{"name": "ingester", "state": "ACTIVE"}); n >= 2 {
				seen++
			}
		}
		if seen == len(procs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after 30s: the two ingesters do not see each other ACTIVE in the ring")
		}
	}

	for i := 0; i < 4; i++ {
		if code := post(t, procs[i%2].URL+"/ingest?name=heap&format=pprof", "application/octet-stream", profile); code != http.StatusOK {
			t.Fatalf("push: %d", code)
		}
	}
	if code := post(t, procs[0].URL+"/ingest?name=heap&format=bogus", "application/octet-stream", []byte("x")); code != http.StatusUnsupportedMediaType {
		t.Errorf("push in an unsupported format: %d, want 415", code)
	}
	if code := post(t, procs[0].URL+"/ingest?name=heap&format=pprof", "application/octet-stream", []byte("not a profile")); code != http.StatusUnprocessableEntity {
		t.Errorf("push of a broken profile: %d, want 422 (Pyroscope's answer)", code)
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
	// A tenant whose bucket index cannot be written (a directory stands where it goes):
	// the compactor that owns it fails at stage "index" on every pass.
	if err := os.MkdirAll(filepath.Join(bucket, "unwritable-index", "bucket-index.json", "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if code := post(t, p.InternalURL+"/ingester/flush?wait=true", "", nil); code != http.StatusOK {
			t.Fatalf("flush: %d", code)
		}
		scrape(t, p.URL+"/metrics", s)
	}
	// Both ingesters uploaded a block of the same range: a job merges them once the range
	// is -compactor.first-level-compaction-wait-period in the past.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var jobs, failures float64
		for _, p := range procs {
			n, _ := sampleSum(t, p.URL+"/metrics", "hearth_compactor_jobs_total", map[string]string{"result": "success"})
			jobs += n
			n, _ = sampleSum(t, p.URL+"/metrics", "hearth_compactor_failures_total", map[string]string{"stage": "index"})
			failures += n
		}
		if jobs > 0 && failures > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %v successful compaction jobs, %v index failures", jobs, failures)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, p := range procs {
		scrape(t, p.URL+"/metrics", s)
	}
	return s
}

// fakePodAddr serves, on port 4040 (the operator's fixed pod port) of a random loopback
// address, an ingester pod that answers every call with a 503, and returns the address.
func fakePodAddr(t *testing.T) string {
	for i := 0; i < 20; i++ {
		ip := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(256), 1+rand.IntN(254))
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "4040"))
		if err != nil {
			continue
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "a fake ingester pod", http.StatusServiceUnavailable)
		})}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ip
	}
	t.Fatal("no free loopback address for a fake pod on port 4040")
	return ""
}

// setPod plays the kubelet for one pod: running and ready at ip, or waiting with a reason.
func setPod(ctx context.Context, c client.Client, pod *corev1.Pod, ip string, waiting string) error {
	now := metav1.Now()
	ready := corev1.ConditionTrue
	state := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	if waiting != "" {
		ready, state = corev1.ConditionFalse, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP, pod.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: now}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Ready: waiting == "",
		Image: pod.Spec.Containers[0].Image, State: state}}
	return c.Status().Update(ctx, pod)
}

// operatorSeries runs `hearth operator` against a real kube-apiserver and etcd, with
// kube-controller-manager's StatefulSet controller creating pods (this test plays their
// kubelet), and three Ingesters: one it applies and rolls out (one pod ready at a fake
// address whose calls fail, one that cannot pull the new image and is replaced), one
// Degraded for want of its credentials Secret, one whose apply fails (an immutable
// ConfigMap stands in the way).
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

	kcmLog := &testutil.SyncBuffer{}
	kcm := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-controller-manager"), "--kubeconfig="+kubeconfig,
		"--leader-elect=false", "--secure-port=0", "--controllers=statefulset-controller", "-v=0")
	kcm.Stdout, kcm.Stderr = kcmLog, kcmLog
	if err := kcm.Start(); err != nil {
		t.Fatalf("kube-controller-manager: %v", err)
	}
	kcmExited := make(chan struct{})
	go func() { _ = kcm.Wait(); close(kcmExited) }()
	t.Cleanup(func() {
		_ = kcm.Process.Kill()
		<-kcmExited
		if t.Failed() {
			t.Logf("kube-controller-manager log:\n%s", kcmLog.String())
		}
	})

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
	// In the way of broken's apply: its headless Service exists with a cluster IP,
	// which cannot be changed to None.
	if err := c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken-headless"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 4040}}}}); err != nil {
		t.Fatal(err)
	}
	for _, ing := range []*hearthv1.Ingester{
		ingester("fine", hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendFilesystem}),
		ingester("broken", hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendFilesystem}),
		ingester("no-secret", hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendS3, Bucket: "b",
			CredentialsSecret: &hearthv1.CredentialsSecretRef{Name: "absent"}}),
	} {
		if err := c.Create(ctx, ing); err != nil {
			t.Fatal(err)
		}
	}

	// Wait until the operator has reconciled: the first's StatefulSet applied and its pods
	// created, the second Degraded.
	deadline := time.Now().Add(60 * time.Second)
	wait := func(what string, done func() bool) {
		t.Helper()
		for !done() {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("hearth operator exited: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 60s: %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	pods := func() map[string]corev1.Pod {
		var list corev1.PodList
		out := map[string]corev1.Pod{}
		if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": "fine"}); err == nil {
			for _, p := range list.Items {
				out[p.Name] = p
			}
		}
		return out
	}
	wait("fine applied with 3 pods, no-secret Degraded", func() bool {
		var fine, degraded hearthv1.Ingester
		return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fine"}, &fine) == nil &&
			c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "no-secret"}, &degraded) == nil &&
			fine.Status.ObservedGeneration == fine.Generation &&
			meta.IsStatusConditionTrue(degraded.Status.Conditions, hearthv1.ConditionDegraded) &&
			len(pods()) == 3
	})

	// fine-0 is ready at a fake address: the operator's ring reads fail. fine-2 cannot pull
	// its image; once a new image makes it outdated, the rollout deletes it.
	fake := fakePodAddr(t)
	for name, waiting := range map[string]string{"fine-0": "", "fine-2": "ImagePullBackOff"} {
		wait("status of "+name, func() bool {
			p, ok := pods()[name]
			return ok && setPod(ctx, c, &p, fake, waiting) == nil
		})
	}
	uid := pods()["fine-2"].UID
	wait("new image on fine", func() bool {
		var fine hearthv1.Ingester
		if c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fine"}, &fine) != nil {
			return false
		}
		fine.Spec.Image = "hearth:dev2"
		return c.Update(ctx, &fine) == nil
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	wait("the stuck pod replaced, ring reads failing, an apply failing", func() bool {
		replaced, _ := sampleSum(t, url, "hearth_operator_pods_replaced_total", map[string]string{"name": "fine", "how": "deleted"})
		calls, _ := sampleSum(t, url, "hearth_operator_pod_calls_total", map[string]string{"call": "ring", "result": "error"})
		errs, _ := sampleSum(t, url, "hearth_operator_reconcile_errors_total", map[string]string{"name": "broken", "phase": "apply"})
		return replaced > 0 && calls > 0 && errs > 0
	})
	if p, ok := pods()["fine-2"]; ok && p.UID == uid {
		t.Errorf("fine-2 was counted as replaced but is still the same pod")
	}
	s := series{}
	scrape(t, url, s)
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
