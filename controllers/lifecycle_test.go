package controllers

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

func uid(u string) func(*PodInfo) { return func(p *PodInfo) { p.UID = types.UID(u) } }

// Issue 23 finding 2: every running pod below the desired count is un-marked once per
// incarnation; leaving pods (at or above it) keep their marker.
func TestMarkersToCancel(t *testing.T) {
	pods := []PodInfo{
		pod("ing-0", 0, uid("a")), pod("ing-1", 1, uid("b")), pod("ing-2", 2, uid("c"), noIP),
		pod("ing-3", 3, uid("d"), terminating), pod("ing-4", 4, uid("e")),
		pod("other-0", 0, uid("f"), func(p *PodInfo) { p.StatefulSet = "other" }),
	}
	got := names(MarkersToCancel(pods, map[string]int32{"ing": 4}, map[types.UID]bool{"a": true}))
	if want := []string{"ing-1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("MarkersToCancel = %v, want %v (ing-0 cleared, ing-2 not running, ing-3 terminating, ing-4 leaving, other-0 unknown)", got, want)
	}
	// Parked at 0 and back to 5: every returning pod.
	got = names(MarkersToCancel([]PodInfo{pod("ing-0", 0), pod("ing-4", 4)}, map[string]int32{"ing": 5}, nil))
	if want := []string{"ing-0", "ing-4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a scale-up: %v, want %v", got, want)
	}
}

// Issue 23 finding 3: a scale-down waits for a rollout, and for leaving pods it cannot
// prepare when their volume may hold data.
func TestScaleDownWait(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pods     []PodInfo
		bound    map[string]bool
		want     string // substring; "" means may go on
		degraded bool
	}{
		{name: "healthy", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2)}},
		{name: "mid-rollout (a staying pod outdated)", pods: []PodInfo{pod("ing-0", 0, outdated), pod("ing-1", 1), pod("ing-2", 2)},
			want: "rollout is in progress (ing-0"},
		{name: "mid-rollout (the leaving pod outdated)", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, outdated)},
			want: "rollout is in progress (ing-2"},
		{name: "leaving pod terminating", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, terminating)},
			want: "ing-2 terminating"},
		{name: "leaving pod stuck", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, stuck("CrashLoopBackOff"))},
			want: "ing-2 cannot start (CrashLoopBackOff)", degraded: true},
		{name: "leaving pod without IP, bound claim", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, noIP)},
			bound: map[string]bool{"data-ing-2": true}, want: "ing-2 not running"},
		{name: "leaving pod without IP that never ran (claim not bound)", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, noIP)}},
		{name: "leaving pod not created, bound claim", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1)},
			bound: map[string]bool{"data-ing-2": true}, want: "ing-2 not created yet"},
		{name: "leaving pod not created, no claim", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1)}},
		{name: "leaving pod not ready but running: prepared", pods: []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, notReady)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait, degraded := ScaleDownWait("ing", 3, 2, tc.pods, tc.bound, nil)
			if (tc.want == "") != (wait == "") || !strings.Contains(wait, tc.want) || degraded != tc.degraded {
				t.Fatalf("ScaleDownWait = %q, %v; want %q, %v", wait, degraded, tc.want, tc.degraded)
			}
		})
	}
	if wait, _ := ScaleDownWait("ing", 3, 3, []PodInfo{pod("ing-0", 0, outdated)}, nil, nil); wait != "" {
		t.Fatalf("no scale-down, yet %q", wait)
	}
	if wait, _ := ScaleDownWait("ing", 3, 2, []PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2)}, nil, []string{"ing"}); !strings.Contains(wait, "non-updated replicas") {
		t.Fatalf("a StatefulSet with non-updated replicas: %q", wait)
	}
}

// Issue 23 finding 8: a failed reconcile is retried within the resync period, however long
// it has been failing (controller-runtime's own backoff reaches ~16 minutes).
func TestErrorBackoffIsBounded(t *testing.T) {
	for _, tc := range []struct{ failing, want time.Duration }{
		{0, time.Second}, {5 * time.Second, 5 * time.Second}, {time.Hour, 30 * time.Second},
	} {
		if got := ErrorBackoff(tc.failing, 30*time.Second); got != tc.want {
			t.Errorf("ErrorBackoff(%v) = %v, want %v", tc.failing, got, tc.want)
		}
	}
	if got := PhaseFailedReason("rollout"); got != "RolloutFailed" {
		t.Errorf("PhaseFailedReason(rollout) = %q", got)
	}
}

// Issue 23 finding 6: a missing StatefulSet's size is what its running pods show.
func TestOrphanReplicas(t *testing.T) {
	pods := []PodInfo{pod("ing-0", 0), pod("ing-4", 4, terminating), pod("ing-2", 2), pod("ing-7", 7, func(p *PodInfo) { p.Missing = true }),
		pod("other-9", 9, func(p *PodInfo) { p.StatefulSet = "other" })}
	if got := OrphanReplicas("ing", pods); got != 5 {
		t.Fatalf("OrphanReplicas = %d, want 5", got)
	}
	if got := OrphanReplicas("ing", nil); got != 0 {
		t.Fatalf("OrphanReplicas without pods = %d", got)
	}
}

// Issue 23 finding 9: without zones, an outdated pod that runs but never turned Ready is
// replaced (a reverted bad spec) instead of being waited for.
func TestRolloutReplacesAnOutdatedPodThatNeverTurnsReady(t *testing.T) {
	ring := active("ing-0", "ing-1", "ing-2")
	step := NextRollout([]PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, outdated, notReady)}, ring, nil)
	if step.Action != RolloutDelete || !reflect.DeepEqual(step.Delete, []string{"ing-2"}) {
		t.Fatalf("step %+v, want ing-2 replaced", step)
	}
	// Another pod is not ready too: it waits (that one is not outdated).
	step = NextRollout([]PodInfo{pod("ing-0", 0, notReady), pod("ing-1", 1), pod("ing-2", 2, outdated, notReady)}, ring, nil)
	if step.Action != RolloutWait {
		t.Fatalf("step %+v, want a wait", step)
	}
	// A ring member without a pod is unhealthy: it waits.
	step = NextRollout([]PodInfo{pod("ing-0", 0), pod("ing-1", 1), pod("ing-2", 2, outdated, notReady)}, with(ring, "ghost", StateLeaving), nil)
	if step.Action != RolloutWait {
		t.Fatalf("step %+v, want a wait", step)
	}
}

// Issue 23 finding 5: the ConfigMap is named by its content; unused ones are stale.
func TestConfigMapPerRevisionNames(t *testing.T) {
	ing := fixtures()["minimal"]
	a, err := RenderConfigMap(ing)
	if err != nil {
		t.Fatal(err)
	}
	ing.Spec.Log.Level = "debug"
	b, _ := RenderConfigMap(ing)
	if a.Name == b.Name || !strings.HasPrefix(a.Name, ing.Name+"-config-") || a.Immutable == nil || !*a.Immutable {
		t.Fatalf("names %s, %s (immutable %v)", a.Name, b.Name, a.Immutable)
	}
	if sts := RenderStatefulSet(ing, Zones(ing)[0], b); sts.Spec.Template.Spec.Volumes[0].ConfigMap.Name != b.Name {
		t.Fatalf("the StatefulSet mounts %s", sts.Spec.Template.Spec.Volumes[0].ConfigMap.Name)
	}
	got := StaleConfigMaps([]string{"ing-config", b.Name, a.Name}, map[string]bool{b.Name: true})
	want := []string{a.Name, "ing-config"}
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("StaleConfigMaps = %v, want %v", got, want)
	}
}

// Issue 23 finding 10: deletionPolicy FlushWithTimeout gives up after its timeout; Flush never.
func TestDeletionGivesUp(t *testing.T) {
	for _, tc := range []struct {
		policy  hearthv1.DeletionPolicy
		timeout hearthv1.Duration
		since   time.Duration
		want    bool
	}{
		{"", "", 24 * time.Hour, false},
		{hearthv1.DeletionFlush, "1s", time.Hour, false},
		{hearthv1.DeletionFlushWithTimeout, "", 9 * time.Minute, false},
		{hearthv1.DeletionFlushWithTimeout, "", 10 * time.Minute, true},
		{hearthv1.DeletionFlushWithTimeout, "30s", 31 * time.Second, true},
		{hearthv1.DeletionFlushWithTimeout, "30s", 29 * time.Second, false},
	} {
		if got := DeletionGivesUp(tc.policy, tc.timeout, tc.since); got != tc.want {
			t.Errorf("DeletionGivesUp(%q, %q, %v) = %v", tc.policy, tc.timeout, tc.since, got)
		}
	}
}

// Issue 23 finding 7: claims (ownerless) never carry app.kubernetes.io/instance, which
// Argo CD's label tracking reads as "part of the Application of that name"; the claim
// templates of existing StatefulSets (immutable) are kept and their claims relabelled.
func TestClaimsCarryNoArgoTrackingLabel(t *testing.T) {
	ing := fixtures()["minimal"]
	sts := RenderStatefulSet(ing, Zones(ing)[0], &corev1.ConfigMap{})
	l := sts.Spec.VolumeClaimTemplates[0].Labels
	if _, ok := l[LabelInstance]; ok || l[LabelClaimInstance] != ing.Name {
		t.Fatalf("claim template labels %v", l)
	}
	// The selector (immutable) is unchanged.
	if sts.Spec.Selector.MatchLabels[LabelInstance] != ing.Name {
		t.Fatalf("selector %v", sts.Spec.Selector.MatchLabels)
	}
	// A StatefulSet created with the older claim labels keeps them (no immutable-field error).
	live := sts.DeepCopy()
	live.Spec.VolumeClaimTemplates[0].Labels = SelectorLabels(ing)
	desired := sts.DeepCopy()
	KeepClaimSizes(desired, live)
	if !reflect.DeepEqual(desired.Spec.VolumeClaimTemplates[0].Labels, SelectorLabels(ing)) {
		t.Fatalf("live claim labels not kept: %v", desired.Spec.VolumeClaimTemplates[0].Labels)
	}
	for _, tc := range []struct {
		l             map[string]string
		mine, relabel bool
	}{
		{SelectorLabels(ing), true, true},
		{ClaimLabels(ing, ""), true, false},
		{map[string]string{LabelName: appName, LabelComponent: component, LabelClaimInstance: "other"}, false, false},
		{map[string]string{LabelInstance: ing.Name}, false, false}, // not a hearth claim
	} {
		if mine, relabel := ClaimOf(ing.Name, tc.l); mine != tc.mine || relabel != tc.relabel {
			t.Errorf("ClaimOf(%v) = %v, %v", tc.l, mine, relabel)
		}
	}
}

// Issue 23 finding 4: a storage growth that cannot proceed does not hold rollouts, and a
// claim reattached below the size is grown.
func TestStorageGrowthIsNoTrap(t *testing.T) {
	if !RolloutMayRun(false, true, true, "") {
		t.Error("a blocked growth holds the rollout")
	}
	if RolloutMayRun(false, true, false, "") || RolloutMayRun(true, false, false, "") || RolloutMayRun(false, false, false, "unsettled") {
		t.Error("a rollout during a growth, while paused, or unsettled")
	}
	two, one := resource.MustParse("2Gi"), resource.MustParse("1Gi")
	if !ReattachedClaim(two, one, true) || ReattachedClaim(two, one, false) || ReattachedClaim(two, two, true) {
		t.Error("ReattachedClaim")
	}
}
