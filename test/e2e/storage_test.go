package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// storageGrowth is the storage-growth scenario: under load, spec.storage.size grows from
// 1Gi to 2Gi. The operator raises every claim's request (the platform's StorageClass
// allows expansion and the node agent plays the resizer), then deletes the StatefulSet
// with orphan propagation and applies it again with the bigger claim template. The pods
// are never restarted (same UIDs, no restarts, same tokens), the new StatefulSet adopts
// them, they are not seen as outdated, the Ingester reports the growth and then
// Complete, and every acknowledged profile is stored exactly once.
func (e *scenarioEnv) storageGrowth(t *testing.T) {
	const ns, name = "storage", "hearth"
	ctx := context.Background()
	e.apply(t, ns, name, 3, 3)
	names := podNames(name, 3)
	cs := e.p.Clientset

	stsBefore, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podUID := map[string]types.UID{}
	tokensBefore := map[string][]uint32{}
	for _, n := range names {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		podUID[n] = pod.UID
		tokensBefore[n] = tokens(t, pod.Status.PodIP)[n]
	}

	b := e.startLoad(t, ns)
	time.Sleep(2 * time.Second)

	// Watch the Progressing condition through the growth.
	var mu sync.Mutex
	seen := map[string]bool{}
	stopPoll := poll(100*time.Millisecond, func() {
		c := e.condition(ns, name, "Progressing")
		reason, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(c, "True "), "False "), ":")
		mu.Lock()
		seen[reason] = true
		mu.Unlock()
	})

	start := time.Now()
	e.patchSpec(t, ns, name, map[string]any{"storage": map[string]any{"size": "2Gi"}})
	want := resource.MustParse("2Gi")
	eventually(t, 2*time.Minute, "scenario 7: volumes grown and the StatefulSet recreated", func() string {
		for _, n := range names {
			pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-"+n, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			if c := pvc.Status.Capacity[corev1.ResourceStorage]; c.Cmp(want) != 0 {
				return fmt.Sprintf("claim data-%s has %s", n, c.String())
			}
		}
		sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "StatefulSet: " + err.Error()
		}
		if sts.UID == stsBefore.UID {
			return "the StatefulSet was not recreated"
		}
		if got := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(want) != 0 {
			return "the claim template asks for " + got.String()
		}
		if c := e.condition(ns, name, "Progressing"); !strings.HasPrefix(c, "False Complete") {
			return "Progressing is " + c
		}
		return e.settled(ns, name, 3)
	})
	t.Logf("scenario 7: volumes grown 1Gi→2Gi and the StatefulSet recreated in %s (under load)", time.Since(start).Round(time.Millisecond))
	stopPoll()
	var reasons []string
	for r := range seen {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	t.Logf("scenario 7: Progressing reasons seen: %v", reasons)
	if !seen["ResizingStorage"] {
		t.Errorf("scenario 7: the Ingester never reported ResizingStorage (saw %v)", reasons)
	}

	// The pods kept running: same UIDs, never restarted, adopted by the new StatefulSet,
	// same tokens.
	sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.UID != podUID[n] {
			t.Errorf("scenario 7: %s was replaced (uid %s, was %s)", n, pod.UID, podUID[n])
		}
		for _, st := range pod.Status.ContainerStatuses {
			if st.RestartCount != 0 {
				t.Errorf("scenario 7: %s container %s restarted %d times", n, st.Name, st.RestartCount)
			}
		}
		if ref := metav1.GetControllerOf(pod); ref == nil || ref.UID != sts.UID {
			t.Errorf("scenario 7: %s is not owned by the new StatefulSet: %+v", n, ref)
		}
		if got := tokens(t, pod.Status.PodIP)[n]; !equalTokens(got, tokensBefore[n]) {
			t.Errorf("scenario 7: %s's tokens changed", n)
		}
		pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-"+n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := pv.Spec.Capacity[corev1.ResourceStorage]; c.Cmp(want) != 0 {
			t.Errorf("scenario 7: %s's volume %s has %s", n, pv.Name, c.String())
		}
	}
	resized, recreated := 0, 0
	if evs, err := cs.EventsV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, ev := range evs.Items {
			switch ev.Reason {
			case "ResizingStorage":
				resized++
			case "RecreatingStatefulSet":
				recreated++
			}
		}
	}
	if resized != 3 || recreated != 1 {
		t.Errorf("scenario 7: Events: %d ResizingStorage (want 3, one per claim), %d RecreatingStatefulSet (want 1)", resized, recreated)
	}

	time.Sleep(time.Second)
	b.end(t, "scenario 7")
	if b.errors.Load() > 0 {
		t.Errorf("scenario 7: %d pushes failed while the storage grew: %v", b.errors.Load(), b.codes)
	}
	e.checkAll(t, "scenario 7", "http://"+podIP(t, e.p, ns, names[0])+":4040", b)
}

func equalTokens(a, b []uint32) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
