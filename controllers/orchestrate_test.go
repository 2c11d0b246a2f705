package controllers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pod builds a PodInfo: ready, running, current, with an IP.
func pod(name string, ord int, mods ...func(*PodInfo)) PodInfo {
	p := PodInfo{Name: name, StatefulSet: "ing", Ordinal: ord, IP: "10.0.0.1", Ready: true, Running: true}
	for _, m := range mods {
		m(&p)
	}
	return p
}

func outdated(p *PodInfo)    { p.Outdated = true }
func notReady(p *PodInfo)    { p.Ready = false }
func terminating(p *PodInfo) { p.Terminating = true }
func noIP(p *PodInfo)        { p.IP = ""; p.Running = false; p.Ready = false }
func zone(z string) func(*PodInfo) {
	return func(p *PodInfo) { p.Zone = z; p.StatefulSet = "ing-" + z }
}
func stuck(r string) func(*PodInfo) { return func(p *PodInfo) { p.Stuck = r; p.Ready = false } }

func active(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = StateActive
	}
	return m
}

func with(m map[string]string, id, st string) map[string]string {
	m[id] = st
	return m
}

func TestNextRollout(t *testing.T) {
	cases := []struct {
		name     string
		pods     []PodInfo
		ring     map[string]string
		zones    []string
		action   RolloutAction
		del      []string
		inFlight []string
		msg      string
	}{
		{"nothing outdated", []PodInfo{pod("ing-0", 0), pod("ing-1", 1)}, active("ing-0", "ing-1"), nil,
			RolloutDone, nil, nil, "current template"},
		{"healthy: highest ordinal first", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, outdated), pod("ing-2", 2, outdated)},
			active("ing-0", "ing-1", "ing-2"), nil, RolloutDelete, []string{"ing-2"}, []string{"ing-2"}, "replacing ing-2"},
		{"ordinal 10 after 9 (numeric order)", []PodInfo{pod("ing-9", 9, outdated), pod("ing-10", 10, outdated)},
			active("ing-9", "ing-10"), nil, RolloutDelete, []string{"ing-10"}, []string{"ing-10"}, ""},
		{"replacement not ready yet", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, outdated), pod("ing-2", 2, notReady)},
			active("ing-0", "ing-1", "ing-2"), nil, RolloutWait, nil, []string{"ing-2"}, "ing-2 not ready"},
		{"replacement ready but JOINING", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1), pod("ing-2", 2)},
			with(active("ing-0", "ing-2"), "ing-1", StateJoining), nil, RolloutWait, nil, []string{"ing-1"}, "ing-1 JOINING"},
		{"replacement not in the ring", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1)},
			active("ing-0"), nil, RolloutWait, nil, []string{"ing-1"}, "not in the ring"},
		{"deleted pod still terminating", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, outdated, terminating)},
			with(active("ing-0"), "ing-1", StateLeaving), nil, RolloutWait, nil, []string{"ing-1"}, "terminating"},
		{"unhealthy member without a pod blocks", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1)},
			with(active("ing-0", "ing-1"), "ing-5", StateUnhealthy), nil, RolloutWait, nil, []string{"ing-5"}, "ring member ing-5 UNHEALTHY"},
		{"leaving member without a pod blocks", []PodInfo{pod("ing-0", 0, outdated)},
			with(active("ing-0"), "old-3", StateLeaving), nil, RolloutWait, nil, []string{"old-3"}, "LEAVING"},
		{"another pod not ready blocks", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, notReady)},
			active("ing-0", "ing-1"), nil, RolloutWait, nil, []string{"ing-1"}, ""},
		// Issue 23 #9: an outdated pod that is not ready is the one replaced.
		{"outdated pod not ready replaced", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, outdated, notReady)},
			active("ing-0", "ing-1"), nil, RolloutDelete, []string{"ing-1"}, []string{"ing-1"}, "outdated and not ready"},
		{"deleted pod not recreated yet", WithMissing([]PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, outdated)}, map[string]int32{"ing": 3}, nil),
			active("ing-0", "ing-1", "ing-2"), nil, RolloutWait, nil, []string{"ing-2"}, "ing-2 not created yet"},
		{"ring unknown", []PodInfo{pod("ing-0", 0, outdated)}, nil, nil, RolloutWait, nil, nil, "no ingester answered"},
		{"stuck outdated pods replaced despite the budget", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, outdated, stuck("ImagePullBackOff")),
			pod("ing-2", 2, outdated, stuck("CrashLoopBackOff")), pod("ing-3", 3, notReady)},
			with(active("ing-0"), "ing-3", StateUnhealthy), nil, RolloutDelete, []string{"ing-1", "ing-2"}, []string{"ing-1", "ing-2"}, "ing-1 (ImagePullBackOff)"},
		{"stuck current pod stops the rollout", []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1, outdated), pod("ing-2", 2, stuck("ErrImagePull"))},
			active("ing-0", "ing-1"), nil, RolloutWait, nil, []string{"ing-2"}, "ing-2 not ready"},
		{"stuck CreateContainerError", []PodInfo{pod("ing-0", 0, outdated, stuck("CreateContainerError"))}, nil, nil,
			RolloutDelete, []string{"ing-0"}, []string{"ing-0"}, "CreateContainerError"},
		{"terminating outdated pod not counted", []PodInfo{pod("ing-0", 0, outdated, terminating)}, active(), nil,
			RolloutDone, nil, nil, ""},
		{"zones: first zone entirely", []PodInfo{
			pod("ing-a-0", 0, zone("a"), outdated), pod("ing-a-1", 1, zone("a"), outdated),
			pod("ing-b-0", 0, zone("b"), outdated), pod("ing-c-0", 0, zone("c"), outdated)},
			active("ing-a-0", "ing-a-1", "ing-b-0", "ing-c-0"), []string{"a", "b", "c"},
			RolloutDelete, []string{"ing-a-0", "ing-a-1"}, []string{"ing-a-0", "ing-a-1"}, "zone a"},
		{"zones: the zone in flight continues", []PodInfo{
			pod("ing-a-0", 0, zone("a")), pod("ing-a-1", 1, zone("a"), outdated),
			pod("ing-b-0", 0, zone("b"), outdated), pod("ing-c-0", 0, zone("c"), outdated)},
			with(active("ing-a-1", "ing-b-0", "ing-c-0"), "ing-a-0", StateJoining), []string{"a", "b", "c"},
			RolloutDelete, []string{"ing-a-1"}, []string{"ing-a-0", "ing-a-1"}, "zone a"},
		{"zones: wait for the zone's replacements", []PodInfo{
			pod("ing-a-0", 0, zone("a"), notReady), pod("ing-a-1", 1, zone("a")),
			pod("ing-b-0", 0, zone("b"), outdated), pod("ing-c-0", 0, zone("c"), outdated)},
			active("ing-a-0", "ing-a-1", "ing-b-0", "ing-c-0"), []string{"a", "b", "c"},
			RolloutWait, nil, []string{"ing-a-0"}, "waiting for zone a"},
		{"zones: next zone when the first is done", []PodInfo{
			pod("ing-a-0", 0, zone("a")), pod("ing-b-0", 0, zone("b"), outdated), pod("ing-c-0", 0, zone("c"), outdated)},
			active("ing-a-0", "ing-b-0", "ing-c-0"), []string{"a", "b", "c"},
			RolloutDelete, []string{"ing-b-0"}, []string{"ing-b-0"}, "zone b"},
		{"zones: two zones unsettled", []PodInfo{
			pod("ing-a-0", 0, zone("a"), notReady, outdated), pod("ing-b-0", 0, zone("b"), notReady), pod("ing-c-0", 0, zone("c"), outdated)},
			active("ing-a-0", "ing-b-0", "ing-c-0"), []string{"a", "b", "c"},
			RolloutWait, nil, []string{"ing-a-0", "ing-b-0"}, "outside one zone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := NextRollout(tc.pods, tc.ring, tc.zones)
			if got.Action != tc.action || !reflect.DeepEqual(got.Delete, tc.del) || !reflect.DeepEqual(got.InFlight, tc.inFlight) {
				t.Fatalf("got %s delete %v in flight %v (%s); want %s delete %v in flight %v", got.Action, got.Delete, got.InFlight, got.Message,
					tc.action, tc.del, tc.inFlight)
			}
			if !strings.Contains(got.Message, tc.msg) {
				t.Fatalf("message %q does not contain %q", got.Message, tc.msg)
			}
		})
	}
	// Counts.
	got := NextRollout([]PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1), pod("ing-2", 2, outdated, terminating)}, active("ing-0", "ing-1"), nil)
	if got.Outdated != 1 || got.Updated != 1 {
		t.Fatalf("counts outdated %d updated %d", got.Outdated, got.Updated)
	}
}

func TestStuckReasonAndPodInfo(t *testing.T) {
	mk := func(reason string, init bool) *corev1.Pod {
		p := &corev1.Pod{}
		cs := []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}
		if init {
			p.Status.InitContainerStatuses = cs
		} else {
			p.Status.ContainerStatuses = cs
		}
		return p
	}
	for reason, want := range map[string]bool{"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true,
		"CreateContainerError": true, "RunContainerError": true, "ErrImageNeverPull": true,
		"ContainerCreating": false, "PodInitializing": false} {
		if got := StuckReason(mk(reason, false)) != ""; got != want {
			t.Errorf("%s: stuck %v, want %v", reason, got, want)
		}
		// One list: what makes the rollout replace a pod is what makes it Degraded.
		pod := mk(reason, false)
		pod.Name = "p"
		if got := podProblem([]corev1.Pod{*pod}) != nil; got != want {
			t.Errorf("%s: Degraded %v, want %v", reason, got, want)
		}
	}
	if StuckReason(mk("ImagePullBackOff", true)) != "ImagePullBackOff" {
		t.Errorf("init container not seen")
	}
	if StuckReason(&corev1.Pod{}) != "" {
		t.Errorf("a pod without statuses is not stuck")
	}

	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "ing-a"}, Status: appsv1.StatefulSetStatus{UpdateRevision: "ing-a-new"}}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ing-a-12", Labels: map[string]string{
		appsv1.ControllerRevisionHashLabelKey: "ing-a-old", LabelZone: "a"}}}
	pi := PodInfoOf(p, sts)
	if !pi.Outdated || pi.Ordinal != 12 || pi.Zone != "a" || pi.StatefulSet != "ing-a" {
		t.Fatalf("%+v", pi)
	}
	p.Labels[appsv1.ControllerRevisionHashLabelKey] = "ing-a-new"
	if PodInfoOf(p, sts).Outdated {
		t.Fatal("current pod outdated")
	}
	sts.Status.UpdateRevision = ""
	p.Labels[appsv1.ControllerRevisionHashLabelKey] = "x"
	if PodInfoOf(p, sts).Outdated {
		t.Fatal("outdated before the StatefulSet controller reported a revision")
	}
	if ordinalOf("ing", "ing-a-1") != -1 || ordinalOf("ing", "ing-3") != 3 || ordinalOf("ing", "other-3") != -1 {
		t.Fatal("ordinalOf")
	}
}

func names(ps []PodInfo) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestPlanScaleDown(t *testing.T) {
	five := []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2), pod("ing-3", 3), pod("ing-4", 4)}
	cases := []struct {
		name                   string
		live, desired          int32
		pods                   []PodInfo
		prepared               []string
		prepare, skipped, canc []string
	}{
		{"5 to 3 prepares 3 and 4", 5, 3, five, nil, []string{"ing-3", "ing-4"}, nil, nil},
		{"no change", 5, 5, five, nil, nil, nil, nil},
		{"scale up", 3, 5, five[:3], nil, nil, nil, nil},
		{"back up before the shrink cancels", 5, 5, five, []string{"ing-3", "ing-4"}, nil, nil, []string{"ing-3", "ing-4"}},
		{"partly back up", 5, 4, five, []string{"ing-3", "ing-4"}, []string{"ing-4"}, nil, []string{"ing-3"}},
		{"never started pods have nothing to flush", 5, 3, []PodInfo{pod("ing-0", 0), pod("ing-3", 3, noIP), pod("ing-4", 4)}, nil,
			[]string{"ing-4"}, []string{"ing-3"}, nil},
		{"terminating pods are not prepared again", 5, 3, []PodInfo{pod("ing-3", 3, terminating), pod("ing-4", 4)}, nil,
			[]string{"ing-4"}, nil, nil},
		{"other StatefulSet's pods ignored", 2, 1, []PodInfo{pod("ing-1", 1), pod("ing-b-1", 1, zone("b"))}, nil,
			[]string{"ing-1"}, nil, nil},
		{"prepared pod already gone: nothing to cancel", 3, 3, five[:3], []string{"ing-3"}, nil, nil, nil},
		// The StatefulSet was shrunk to 3 but has not deleted ing-3 and ing-4 yet:
		// their markers stay so their stop flushes.
		{"after the shrink, leaving pods keep their marker", 3, 3, five, []string{"ing-3", "ing-4"}, nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanScaleDown("ing", tc.live, tc.desired, tc.pods, tc.prepared)
			if !reflect.DeepEqual(names(got.Prepare), tc.prepare) || !reflect.DeepEqual(got.Skipped, tc.skipped) || !reflect.DeepEqual(names(got.Cancel), tc.canc) {
				t.Fatalf("prepare %v skipped %v cancel %v; want %v %v %v", names(got.Prepare), got.Skipped, names(got.Cancel), tc.prepare, tc.skipped, tc.canc)
			}
		})
	}
}

func TestForgetMembers(t *testing.T) {
	cases := []struct {
		name string
		ring map[string]string
		pods []string
		want []string
	}{
		{"all present", active("a", "b"), []string{"a", "b"}, nil},
		{"gone and unhealthy", with(with(active("a"), "b", StateUnhealthy), "c", StateUnhealthy), []string{"a"}, []string{"b", "c"}},
		{"gone but still leaving: wait", with(active("a"), "b", StateLeaving), []string{"a"}, nil},
		{"gone but active (heartbeats still fresh)", active("a", "b"), []string{"a"}, nil},
		{"unhealthy but its pod exists (restarting)", with(active("a"), "b", StateUnhealthy), []string{"a", "b"}, nil},
		{"empty ring", nil, []string{"a"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pods := map[string]bool{}
			for _, p := range tc.pods {
				pods[p] = true
			}
			if got := ForgetMembers(tc.ring, pods); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanStorage(t *testing.T) {
	q := resource.MustParse
	claim := func(name, size string, mods ...func(*ClaimInfo)) ClaimInfo {
		c := ClaimInfo{Name: name, Requested: q(size), StorageClass: "fast", StorageClassFound: true, ExpansionAllowed: true}
		for _, m := range mods {
			m(&c)
		}
		return c
	}
	noExpand := func(c *ClaimInfo) { c.ExpansionAllowed = false }
	cases := []struct {
		name           string
		want, template string
		claims         []ClaimInfo
		resize         []string
		recreate       bool
		blocked        string
	}{
		{"same size", "1Gi", "1Gi", []ClaimInfo{claim("a", "1Gi")}, nil, false, ""},
		{"grow: resize the claims first", "2Gi", "1Gi", []ClaimInfo{claim("a", "1Gi"), claim("b", "2Gi"), claim("c", "1Gi")},
			[]string{"a", "c"}, false, ""},
		{"every claim grown: recreate", "2Gi", "1Gi", []ClaimInfo{claim("a", "2Gi"), claim("b", "3Gi")}, nil, true, ""},
		{"no claims yet: recreate", "2Gi", "1Gi", nil, nil, true, ""},
		{"class without expansion", "2Gi", "1Gi", []ClaimInfo{claim("a", "1Gi", noExpand), claim("b", "1Gi")}, []string{"b"}, false,
			`a: StorageClass "fast" does not set allowVolumeExpansion`},
		{"no class", "2Gi", "1Gi", []ClaimInfo{claim("a", "1Gi", func(c *ClaimInfo) { c.StorageClass = "" })}, nil, false, "a has no storage class"},
		{"class gone", "2Gi", "1Gi", []ClaimInfo{claim("a", "1Gi", func(c *ClaimInfo) { c.StorageClassFound = false })}, nil, false, "not found"},
		{"grown claim with a fixed class is fine", "2Gi", "1Gi", []ClaimInfo{claim("a", "2Gi", noExpand)}, nil, true, ""},
		{"units compare as quantities", "1024Mi", "1Gi", []ClaimInfo{claim("a", "1Gi")}, nil, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanStorage(q(tc.want), q(tc.template), tc.claims)
			if !reflect.DeepEqual(got.Resize, tc.resize) || got.Recreate != tc.recreate || (tc.blocked == "") != (got.Blocked == "") ||
				!strings.Contains(got.Blocked, tc.blocked) {
				t.Fatalf("got %+v; want resize %v recreate %v blocked %q", got, tc.resize, tc.recreate, tc.blocked)
			}
		})
	}
}

func TestPlanDeletion(t *testing.T) {
	pods := []PodInfo{pod("ing-0", 0), pod("ing-1", 1, noIP), pod("ing-2", 2, stuck("CrashLoopBackOff")), pod("ing-3", 3, terminating),
		pod("ing-4", 4, notReady)}
	got := PlanDeletion(false, pods)
	if !reflect.DeepEqual(names(got.Flush), []string{"ing-0", "ing-4"}) || !reflect.DeepEqual(got.Skipped, []string{"ing-1", "ing-2", "ing-3"}) || got.Wait != "" {
		t.Fatalf("%+v", got)
	}
	got = PlanDeletion(true, pods)
	if len(got.Flush) != 0 || !strings.Contains(got.Wait, "spec.paused") {
		t.Fatalf("paused: %+v", got)
	}
	if got := PlanDeletion(false, nil); len(got.Flush)+len(got.Skipped) != 0 || got.Wait != "" {
		t.Fatalf("no pods: %+v", got)
	}
	for in, want := range map[time.Duration]time.Duration{0: 2 * time.Second, 10 * time.Second: 10 * time.Second, time.Hour: 2 * time.Minute} {
		if got := DeletionBackoff(in); got != want {
			t.Errorf("DeletionBackoff(%v) = %v, want %v", in, got, want)
		}
	}
}

// The real PodClient speaks the ingester's HTTP API.
func TestHTTPPodClient(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		f := fail
		mu.Unlock()
		if f {
			http.Error(w, "bucket unreachable", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := HTTPPodClient{FlushTimeout: 5 * time.Second}
	ctx := context.Background()
	for _, f := range []func() error{
		func() error { return c.PrepareShutdown(ctx, addr) },
		func() error { return c.CancelPrepareShutdown(ctx, addr) },
		func() error { return c.Flush(ctx, addr) },
		func() error { return c.Forget(ctx, addr, "ing-4") },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"POST /ingester/prepare-shutdown ", "DELETE /ingester/prepare-shutdown ", "POST /ingester/flush?wait=true ", "POST /ring forget=ing-4"}
	if !reflect.DeepEqual(calls, want) {
		t.Fatalf("calls %q, want %q", calls, want)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	if err := c.Flush(ctx, addr); err == nil || !strings.Contains(err.Error(), "bucket unreachable") {
		t.Fatalf("flush error %v", err)
	}
	srv.Close()
	if err := c.PrepareShutdown(ctx, addr); err == nil {
		t.Fatal("no error from a closed server")
	}
}

func TestResizeProgress(t *testing.T) {
	q := resource.MustParse
	claim := func(name, req, capacity, status string, errs ...string) ClaimResize {
		return ClaimResize{Name: name, Requested: q(req), Capacity: q(capacity), Status: status, Errors: errs}
	}
	for _, tc := range []struct {
		name        string
		claims      []ClaimResize
		wantWaiting []string
		wantFailed  string
	}{
		{"all grown", []ClaimResize{claim("a", "2Gi", "2Gi", ""), claim("b", "2Gi", "3Gi", "")}, nil, ""},
		{"provider still working", []ClaimResize{claim("b", "2Gi", "1Gi", "ControllerResizeInProgress"), claim("a", "2Gi", "1Gi", "")}, []string{"a", "b"}, ""},
		{"not asked yet is not waiting", []ClaimResize{claim("a", "1Gi", "1Gi", "")}, nil, ""},
		{"infeasible", []ClaimResize{claim("a", "2Gi", "1Gi", "NodeResizeInfeasible"), claim("b", "2Gi", "2Gi", "")}, []string{"a"},
			"volumes cannot grow to 2Gi: a: NodeResizeInfeasible"},
		{"resize error condition", []ClaimResize{claim("a", "2Gi", "1Gi", "ControllerResizeInProgress", "quota exceeded")}, []string{"a"},
			"volumes cannot grow to 2Gi: a: quota exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waiting, failed := ResizeProgress(q("2Gi"), tc.claims)
			if !slices.Equal(waiting, tc.wantWaiting) || failed != tc.wantFailed {
				t.Fatalf("got %v %q, want %v %q", waiting, failed, tc.wantWaiting, tc.wantFailed)
			}
		})
	}
}
