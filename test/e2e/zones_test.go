package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// zoneRollout is the rollout scenario with zones: three zones of two pods, RF 3 (one
// replica per zone). An image change replaces one zone at a time, both of its pods at
// once, and the next zone only once they are ACTIVE and Ready; pods of two zones are never
// down together, pushes never fail and every acknowledged profile is stored once.
func (e *scenarioEnv) zoneRollout(t *testing.T) {
	const ns, name = "zones", "hearth"
	zones := []any{map[string]any{"name": "a"}, map[string]any{"name": "b"}, map[string]any{"name": "c"}}
	sets := map[string]int{name + "-a": 2, name + "-b": 2, name + "-c": 2}
	ctx := context.Background()
	if _, err := e.p.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ing := newIngester(ns, name, 6)
	ing.Object["spec"].(map[string]any)["replicationFactor"] = int64(3)
	ing.Object["spec"].(map[string]any)["zones"] = zones
	if _, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "zones: 3 zones of 2 pods settled", func() string { return e.settledSets(ns, sets) })

	b := e.startLoad(t, ns)
	time.Sleep(2 * time.Second)

	// Sample which zones have pods down (terminating, missing or not Ready), and in which
	// order zones are replaced.
	var mu sync.Mutex
	maxZonesDown, order := 0, []string{}
	stopPoll := poll(200*time.Millisecond, func() {
		pods, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return
		}
		down := map[string]bool{}
		present := map[string]bool{}
		for _, pod := range pods.Items {
			present[pod.Name] = true
			if pod.DeletionTimestamp != nil || !podIsReady(&pod) {
				down[zoneOfPod(pod.Name)] = true
			}
		}
		for set, n := range sets {
			for _, pn := range podNames(set, n) {
				if !present[pn] {
					down[zoneOfPod(pn)] = true
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		maxZonesDown = max(maxZonesDown, len(down))
		for z := range down {
			if len(order) == 0 || order[len(order)-1] != z {
				order = append(order, z)
			}
		}
	})

	start := time.Now()
	e.patchSpec(t, ns, name, map[string]any{"image": "hearth:dev-2"})
	eventually(t, 5*time.Minute, "zones: every pod on hearth:dev-2", func() string {
		if msg := e.settledSets(ns, sets); msg != "" {
			return msg
		}
		pods, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		for _, pod := range pods.Items {
			if pod.Spec.Containers[0].Image != "hearth:dev-2" {
				return pod.Name + " runs " + pod.Spec.Containers[0].Image
			}
		}
		return ""
	})
	t.Logf("zones: 3-zone rollout (2 pods a zone) took %s (under load)", time.Since(start).Round(time.Millisecond))
	stopPoll()
	t.Logf("zones: zones with pods down, in order: %v; at most %d at once", order, maxZonesDown)
	if maxZonesDown > 1 {
		t.Errorf("zones: pods of %d zones were down at once (order %v)", maxZonesDown, order)
	}
	// Zone order a, b, c (a zone may show up again only if a pod there restarts).
	seen := map[string]bool{}
	var distinct []string
	for _, z := range order {
		if !seen[z] {
			seen[z] = true
			distinct = append(distinct, z)
		}
	}
	if strings.Join(distinct, ",") != "a,b,c" {
		t.Errorf("zones: replaced in the order %v, want a, b, c", distinct)
	}

	time.Sleep(time.Second)
	b.end(t, "zones")
	if n := b.errors.Load(); n > 0 {
		t.Errorf("zones: %d pushes failed during the rollout: %v %v", n, b.codes, b.first)
	}
	e.checkAll(t, "zones", "http://"+podIP(t, e.p, ns, name+"-a-0")+":4040", b)
}

// zoneOfPod is the zone of a pod named <ingester>-<zone>-<ordinal>.
func zoneOfPod(pod string) string {
	parts := strings.Split(pod, "-")
	if len(parts) < 3 {
		return "?"
	}
	return parts[len(parts)-2]
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
