package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/test/e2e/platform"
)

// scenarioEnv is one platform shared by the scenarios, each with its own namespace, and
// a filesystem bucket per namespace shared by all of that namespace's pods.
type scenarioEnv struct {
	p          *platform.Platform
	dyn        dynamic.Interface
	bucketRoot string
	corpus     string
	perProfile int64
	rng        *rand.Rand    // random moments (operator crashes, eviction victims)
	rollLoads  []*background // every load on the Ingester the operator scenarios share
}

func (e *scenarioEnv) bucket(ns string) string { return filepath.Join(e.bucketRoot, ns) }

// TestScenarios runs the rollout, bad-image, scale, delete, storage and zone scenarios of
// issue 7 on one platform: rollout then bad image on one Ingester, in parallel with scale
// then delete on another, then storage growth on a third; then a zone-aware rollout alone,
// and a scale-down during which a leaving pod is killed.
func TestScenarios(t *testing.T) {
	env := newScenarioEnv(t)
	t.Run("group", func(t *testing.T) {
		t.Run("RolloutThenBadImage", func(t *testing.T) {
			t.Parallel()
			env.rolloutThenBadImage(t)
		})
		t.Run("ScaleThenDelete", func(t *testing.T) {
			t.Parallel()
			env.scaleThenDelete(t)
			// Not in parallel with the others: two cores run every pod.
			t.Run("StorageGrowth", env.storageGrowth)
		})
	})
	t.Run("ZoneRollout", env.zoneRollout)
	t.Run("CrashDuringScaleDown", env.crashDuringScaleDown)
}

// newScenarioEnv starts a platform whose pods share a filesystem bucket per namespace;
// opts change the platform's options after that.
func newScenarioEnv(t testing.TB, opts ...func(*platform.Options)) *scenarioEnv {
	bucketRoot := t.TempDir()
	p, _ := startPlatform(t, append([]func(*platform.Options){func(o *platform.Options) {
		o.IngesterArgs = []string{"-storage.filesystem.dir=" + bucketRoot + "/$(POD_NAMESPACE)"}
	}}, opts...)...)
	dyn, err := dynamic.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	dir, perProfile := heapCorpus(t)
	return &scenarioEnv{p: p, dyn: dyn, bucketRoot: bucketRoot, corpus: dir, perProfile: perProfile, rng: rand.New(rand.NewPCG(1, 2))}
}

// apply creates a namespace and an Ingester in it and waits for every pod Ready and
// ACTIVE.
func (e *scenarioEnv) apply(t testing.TB, ns, name string, replicas int, replicationFactor int64, spec ...map[string]any) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.p.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ing := newIngester(ns, name, int64(replicas))
	if err := unstructured.SetNestedField(ing.Object, replicationFactor, "spec", "replicationFactor"); err != nil {
		t.Fatal(err)
	}
	for _, fields := range spec { // more spec fields, e.g. blocks
		for k, v := range fields {
			if err := unstructured.SetNestedField(ing.Object, v, "spec", k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSettled(t, ns, name, replicas, 3*time.Minute)
	t.Cleanup(func() {
		if t.Failed() {
			for i := 0; i < 5; i++ {
				pod := fmt.Sprintf("%s-%d", name, i)
				if l := e.p.Agent.PodLog(ns, pod, "ingester"); l != "" {
					t.Logf("log of %s/%s (tail):\n%s", ns, pod, lastBytes(l, 2500))
				}
			}
		}
	})
}

func podNames(name string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s-%d", name, i))
	}
	return out
}

// settled says "" when the StatefulSet has exactly n pods, all on its update revision,
// Ready, and every one's ring lists exactly those n members ACTIVE.
func (e *scenarioEnv) settled(ns, name string, n int) string {
	return e.settledSets(ns, map[string]int{name: n})
}

// settledSets is settled for several StatefulSets (zones) by name and pod count: the
// namespace holds exactly their pods, each on its StatefulSet's update revision and
// Ready, and every pod's ring lists exactly all of them ACTIVE.
func (e *scenarioEnv) settledSets(ns string, sets map[string]int) string {
	ctx := context.Background()
	pods, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var names []string
	byName := map[string]corev1.Pod{}
	stss := map[string]*appsv1.StatefulSet{}
	instances := map[string]bool{} // the Ingesters the sets belong to: other Ingesters' pods in ns do not count
	for name := range sets {
		sts, err := e.p.Clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		stss[name] = sts
		instances[sts.Spec.Template.Labels["app.kubernetes.io/instance"]] = true
	}
	mine := pods.Items[:0]
	for _, pod := range pods.Items {
		if instances[pod.Labels["app.kubernetes.io/instance"]] {
			mine = append(mine, pod)
			byName[pod.Name] = pod
		}
	}
	pods.Items = mine
	for name, n := range sets {
		sts := stss[name]
		if sts.Status.ObservedGeneration != sts.Generation {
			return "the StatefulSet controller has not observed the new spec of " + name
		}
		for _, pn := range podNames(name, n) {
			pod, ok := byName[pn]
			switch {
			case !ok:
				return pn + " does not exist"
			case pod.DeletionTimestamp != nil:
				return pn + " is terminating"
			case pod.Spec.Containers[0].Image != sts.Spec.Template.Spec.Containers[0].Image:
				return fmt.Sprintf("%s runs %s, the StatefulSet %s", pn, pod.Spec.Containers[0].Image, sts.Spec.Template.Spec.Containers[0].Image)
			case pod.Labels["controller-revision-hash"] != sts.Status.UpdateRevision:
				return fmt.Sprintf("%s on revision %s, update revision %s", pn, pod.Labels["controller-revision-hash"], sts.Status.UpdateRevision)
			}
			names = append(names, pn)
		}
	}
	if len(pods.Items) != len(names) {
		return fmt.Sprintf("%d pods, want %d", len(pods.Items), len(names))
	}
	sort.Strings(names) // the ring lists members by id
	if msg := podsReady(e.p, ns, 0, names...); msg != "" {
		return msg
	}
	for _, pod := range pods.Items {
		if msg := ringActive(pod.Status.PodIP, names...); msg != "" {
			return msg
		}
	}
	return ""
}

func (e *scenarioEnv) waitSettled(t testing.TB, ns, name string, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s/%s settled with %d pods", ns, name, n), func() string { return e.settled(ns, name, n) })
}

// readyIPsOf lists the IPs of the Ready, not terminating pods of the Ingester named
// instance in ns (every Ingester's when instance is "").
func (e *scenarioEnv) readyIPsOf(ns, instance string) []string {
	opts := metav1.ListOptions{}
	if instance != "" {
		opts.LabelSelector = "app.kubernetes.io/instance=" + instance
	}
	pods, err := e.p.Clientset.CoreV1().Pods(ns).List(context.Background(), opts)
	if err != nil {
		return nil
	}
	var ips []string
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || pod.Status.PodIP == "" {
			continue
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ips = append(ips, pod.Status.PodIP)
			}
		}
	}
	sort.Strings(ips)
	return ips
}

// background is a load that runs until stopped, in one-second runs against whichever
// pod is Ready at the time (pods come and go, and so do their IPs), all acknowledged
// pushes in one log.
type background struct {
	acks      *load.AckLog
	attempted atomic.Int64 // pushes + abandoned, over all runs
	pushes    atomic.Int64
	errors    atomic.Int64
	stop      context.CancelFunc
	done      chan struct{}
	mu        sync.Mutex
	codes     map[string]int64
	first     map[string]string // code → first error message
	ackedAt   []timedAck        // every acknowledged push with the wall time of its acknowledgement
}

type timedAck struct {
	id string
	at time.Time
}

func (b *background) record(a load.Ack) {
	b.acks.Record(a)
	b.mu.Lock()
	b.ackedAt = append(b.ackedAt, timedAck{a.ID, time.Now()})
	b.mu.Unlock()
}

// idsBetween lists the profiles acknowledged in [from, to).
func (b *background) idsBetween(from, to time.Time) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ids []string
	for _, a := range b.ackedAt {
		if !a.at.Before(from) && a.at.Before(to) {
			ids = append(ids, a.id)
		}
	}
	return ids
}

// lostBetween logs (and returns) how many of the profiles acknowledged in each phase are
// not found through url: phases are the times between consecutive marks.
func (e *scenarioEnv) lostBetween(t testing.TB, when, url string, marks []time.Time, names []string, bs ...*background) []int {
	t.Helper()
	var lost []int
	for i := 0; i+1 < len(marks); i++ {
		var ids []string
		for _, b := range bs {
			ids = append(ids, b.idsBetween(marks[i], marks[i+1])...)
		}
		n := 0
		if len(ids) > 0 {
			_, acked, err := countProfilesErr(url, ids, e.perProfile)
			if err != nil {
				t.Fatal(err)
			}
			n = len(ids) - int(acked)
		}
		t.Logf("%s: %s: %d acknowledged, %d not found", when, names[i], len(ids), n)
		lost = append(lost, n)
	}
	return lost
}

func (e *scenarioEnv) startLoad(t testing.TB, ns string) *background { return e.startLoadAt(t, ns, 0) }

// startLoadAt is startLoad at rate pushes per second (0: as fast as two workers go).
func (e *scenarioEnv) startLoadAt(t testing.TB, ns string, rate float64) *background {
	return e.startLoadOn(t, ns, "", rate)
}

// startLoadOn is startLoadAt against the pods of one Ingester (instance; "" for every pod
// of ns).
func (e *scenarioEnv) startLoadOn(t testing.TB, ns, instance string, rate float64) *background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{acks: &load.AckLog{}, stop: cancel, done: make(chan struct{}), codes: map[string]int64{}, first: map[string]string{}}
	go func() {
		defer close(b.done)
		for i := 0; ctx.Err() == nil; i++ {
			ips := e.readyIPsOf(ns, instance)
			if len(ips) == 0 {
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
				continue
			}
			s, err := load.Run(ctx, load.Config{URL: "http://" + ips[i%len(ips)] + ":4040", Dir: e.corpus, Workers: 2, Series: 20,
				Rate: rate, Duration: time.Second, Acked: b.record})
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("load: %v", err)
				}
				return
			}
			b.attempted.Add(s.Pushes + s.Abandoned)
			b.pushes.Add(s.Pushes)
			b.errors.Add(s.Errors)
			b.mu.Lock()
			for k, v := range s.ErrorsByCode {
				b.codes[k] += v
				if _, seen := b.first[k]; !seen {
					b.first[k] = s.FirstErrors[k]
				}
			}
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { b.stop(); <-b.done })
	return b
}

// end stops the load and logs what it did.
func (b *background) end(t testing.TB, what string) {
	t.Helper()
	b.stop()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Logf("%s: load pushed %d, acknowledged %d, failed %d %v", what, b.pushes.Load(), len(b.acks.Acks()), b.errors.Load(), b.codes)
	for code, msg := range b.first {
		t.Logf("%s: first %s error: %s", what, code, msg)
	}
	if len(b.acks.Acks()) == 0 {
		t.Errorf("%s: no push was acknowledged", what)
	}
}

// checkAll waits (the bucket is synced every 30s by each querier) until the profiles
// acknowledged are all found through url, then checks them exactly with checkStored.
func (e *scenarioEnv) checkAll(t testing.TB, when, url string, b *background) {
	t.Helper()
	e.checkAllOf(t, when, url, b)
}

// checkAllOf is checkAll over several loads of one Ingester (its earlier ones included:
// the stored total counts them all).
func (e *scenarioEnv) checkAllOf(t testing.TB, when, url string, bs ...*background) {
	t.Helper()
	all := &load.AckLog{}
	var attempted int64
	for _, b := range bs {
		for _, a := range b.acks.Acks() {
			all.Record(a)
		}
		attempted += b.attempted.Load()
	}
	var ids []string
	for _, a := range all.Acks() {
		ids = append(ids, a.ID)
	}
	deadline := time.Now().Add(75 * time.Second)
	for time.Now().Before(deadline) {
		_, acked, err := countProfilesErr(url, ids, e.perProfile)
		if err == nil && acked == float64(len(ids)) {
			break
		}
		time.Sleep(time.Second)
	}
	checkStored(t, when, url, all, attempted, e.perProfile)
}

// waitFound waits (each querier syncs the bucket every 30s) until every one of ids is
// found through url, at most timeout.
func (e *scenarioEnv) waitFound(url string, ids []string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, acked, err := countProfilesErr(url, ids, e.perProfile)
		if err == nil && acked == float64(len(ids)) {
			return
		}
		time.Sleep(time.Second)
	}
}

// tokens reads every member's tokens from ip's ring.
func tokens(t testing.TB, ip string) map[string][]uint32 {
	t.Helper()
	shards, err := ring(ip)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint32{}
	for _, s := range shards {
		out[s.ID] = s.Tokens
	}
	return out
}

func (e *scenarioEnv) patchSpec(t testing.TB, ns, name string, spec map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"spec": spec})
	if _, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Patch(context.Background(), name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// setImage changes spec.image and waits until the operator applied it to the StatefulSet.
func (e *scenarioEnv) setImage(t testing.TB, ns, name, image string) {
	t.Helper()
	e.patchSpec(t, ns, name, map[string]any{"image": image})
	eventually(t, time.Minute, "the StatefulSet on "+image, func() string {
		sts, err := e.p.Clientset.AppsV1().StatefulSets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if img := sts.Spec.Template.Spec.Containers[0].Image; img != image {
			return "the StatefulSet runs " + img
		}
		return ""
	})
}

// sampler counts, every 200ms, the pods of ns that are missing, terminating or not Ready
// out of want, and the pods the Ingester's status.rollout lists in flight; it keeps the
// maximum of each.
type sampler struct {
	maxNotReady, maxInFlight atomic.Int64
	samples                  atomic.Int64
	worst                    atomic.Value
	stop                     context.CancelFunc
	done                     chan struct{}
}

func (e *scenarioEnv) sample(ns, name string, want int) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{stop: cancel, done: make(chan struct{})}
	s.worst.Store("")
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			if pods, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
				ready := 0
				var states []string
				for _, pod := range pods.Items {
					ok := pod.DeletionTimestamp == nil
					r := false
					for _, c := range pod.Status.Conditions {
						if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
							r = true
						}
					}
					if ok && r {
						ready++
					}
					states = append(states, fmt.Sprintf("%s(ready=%v,deleting=%v)", pod.Name, r, !ok))
				}
				if n := int64(want - ready); n > s.maxNotReady.Load() {
					s.maxNotReady.Store(n)
					s.worst.Store(strings.Join(states, " "))
				}
				s.samples.Add(1)
			}
			if ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
				inFlight, _, _ := unstructured.NestedStringSlice(ing.Object, "status", "rollout", "inFlight")
				if n := int64(len(inFlight)); n > s.maxInFlight.Load() {
					s.maxInFlight.Store(n)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *sampler) end() { s.stop(); <-s.done }

// degraded returns the Ingester's Degraded condition as "status reason: message".
func (e *scenarioEnv) degraded(ns, name string) string { return e.condition(ns, name, "Degraded") }

// condition returns one condition of the Ingester as "status reason: message".
func (e *scenarioEnv) condition(ns, name, typ string) string {
	ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(ing.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			return fmt.Sprintf("%v %v: %v", m["status"], m["reason"], m["message"])
		}
	}
	return "no " + typ + " condition"
}

func (e *scenarioEnv) rolloutThenBadImage(t *testing.T) {
	const ns, name = "rollout", "hearth"
	e.apply(t, ns, name, 3, 3)
	pods := podNames(name, 3)
	before := tokens(t, podIP(t, e.p, ns, pods[0]))
	b := e.startLoad(t, ns)
	time.Sleep(2 * time.Second)

	// Scenario 2: a new image tag rolls the pods one at a time.
	s := e.sample(ns, name, 3)
	start := time.Now()
	e.setImage(t, ns, name, "hearth:dev-2")
	e.waitSettled(t, ns, name, 3, 4*time.Minute)
	took := time.Since(start)
	s.end()
	t.Logf("scenario 2: 3-pod rollout to hearth:dev-2 took %s (under load); at most %d pods not Ready and %d in flight at once (%d samples; worst: %s)",
		took.Round(time.Millisecond), s.maxNotReady.Load(), s.maxInFlight.Load(), s.samples.Load(), s.worst.Load())
	if s.maxNotReady.Load() > 1 {
		t.Errorf("scenario 2: %d pods were not Ready at once during the rollout: %s", s.maxNotReady.Load(), s.worst.Load())
	}
	if s.maxInFlight.Load() > 1 {
		t.Errorf("scenario 2: status.rollout listed %d pods in flight at once", s.maxInFlight.Load())
	}
	for _, pod := range pods {
		p, err := e.p.Clientset.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := p.Spec.Containers[0].Image; img != "hearth:dev-2" {
			t.Errorf("scenario 2: %s runs %s after the rollout", pod, img)
		}
	}
	after := tokens(t, podIP(t, e.p, ns, pods[1]))
	for _, pod := range pods {
		if len(before[pod]) == 0 || !slices.Equal(before[pod], after[pod]) {
			t.Errorf("scenario 2: %s has other tokens after the rollout (%d before, %d after)", pod, len(before[pod]), len(after[pod]))
		}
	}

	// Scenario 3: a bad image stops the rollout at one pod, Degraded says why.
	e.setImage(t, ns, name, "hearth:nope")
	stuck := pods[2] // the highest ordinal goes first
	eventually(t, 90*time.Second, "scenario 3: "+stuck+" in ImagePullBackOff and Degraded", func() string {
		p, err := e.p.Clientset.CoreV1().Pods(ns).Get(context.Background(), stuck, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		waiting := ""
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil {
				waiting = cs.State.Waiting.Reason
			}
		}
		if waiting != "ImagePullBackOff" {
			return fmt.Sprintf("%s image %s waiting %q", stuck, p.Spec.Containers[0].Image, waiting)
		}
		if d := e.degraded(ns, name); !strings.HasPrefix(d, "True PodsNotStarting") {
			return "Degraded: " + d
		}
		return ""
	})
	d := e.degraded(ns, name)
	t.Logf("scenario 3: Degraded: %s", d)
	if !strings.Contains(d, stuck) {
		t.Errorf("scenario 3: Degraded does not name %s: %s", stuck, d)
	}
	// It stays stopped at that pod: the other two keep running the good image, Ready.
	for i := 0; i < 10; i++ {
		if msg := podsReady(e.p, ns, 0, pods[0], pods[1]); msg != "" {
			t.Errorf("scenario 3: with %s stuck: %s", stuck, msg)
			break
		}
		for _, pod := range pods[:2] {
			p, err := e.p.Clientset.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
			if err == nil && p.Spec.Containers[0].Image != "hearth:dev-2" {
				t.Errorf("scenario 3: the rollout went on past %s: %s runs %s", stuck, pod, p.Spec.Containers[0].Image)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Fixing the spec (a new good tag) unsticks it: every pod ends on hearth:v0.1.0.
	fixed := time.Now()
	e.setImage(t, ns, name, "hearth:v0.1.0")
	e.waitSettled(t, ns, name, 3, 4*time.Minute)
	t.Logf("scenario 3: after the fix the rollout finished in %s", time.Since(fixed).Round(time.Millisecond))
	eventually(t, 30*time.Second, "scenario 3: Degraded cleared", func() string {
		if d := e.degraded(ns, name); strings.HasPrefix(d, "True") {
			return d
		}
		return ""
	})
	time.Sleep(time.Second)
	b.end(t, "scenarios 2 and 3")
	// Stopping pods serve on for spec.shutdownDelay (5s) after they turned not-ready and
	// LEAVING, so a client that follows the Ready pods is never refused.
	if n := b.errors.Load(); n > 0 {
		t.Errorf("scenarios 2 and 3: %d pushes failed during the rollouts: %v %v", n, b.codes, b.first)
	}
	e.checkAll(t, "scenarios 2 and 3", "http://"+podIP(t, e.p, ns, pods[0])+":4040", b)
}

// blocksBySource counts the block meta.json files in a bucket directory by their source
// (the ingester that wrote them).
func blocksBySource(t testing.TB, dir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != "meta.json" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var m struct {
			Source string `json:"source"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out[m.Source]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *scenarioEnv) kubectl(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig=" + e.p.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
}

// finalStops says, for each pod, whether its last `ingester stopped` log line says
// final=true (it flushed, uploaded and left the ring) — "" when there is none.
func (e *scenarioEnv) finalStops(ns string, pods []string) map[string]string {
	out := map[string]string{}
	for _, pod := range pods {
		out[pod] = ""
		for _, line := range strings.Split(e.p.Agent.PodLog(ns, pod, "ingester"), "\n") {
			if strings.Contains(line, `msg="ingester stopped"`) {
				switch {
				case strings.Contains(line, "final=true"):
					out[pod] = "final=true"
				case strings.Contains(line, "final=false"):
					out[pod] = "final=false"
				}
			}
		}
	}
	return out
}

func (e *scenarioEnv) scaleThenDelete(t *testing.T) {
	const ns, name = "scale", "hearth"
	ctx := context.Background()
	// Replication factor 2: it may not exceed the 2 replicas scaled down to.
	e.apply(t, ns, name, 3, 2)
	b := e.startLoad(t, ns)
	time.Sleep(2 * time.Second)

	// Scenario 4: 3 → 5 → 2 with kubectl scale.
	up := time.Now()
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=5")
	e.waitSettled(t, ns, name, 5, 3*time.Minute)
	t.Logf("scenario 4: scaled 3→5 in %s", time.Since(up).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // load on all five
	leaving := podNames(name, 5)[2:]
	blocksBefore := blocksBySource(t, e.bucket(ns))
	down := time.Now()
	e.kubectl(t, "-n", ns, "scale", "ingester/"+name, "--replicas=2")
	e.waitSettled(t, ns, name, 2, 4*time.Minute)
	downDone := time.Now()
	t.Logf("scenario 4: scaled 5→2 in %s (under load)", downDone.Sub(down).Round(time.Millisecond))
	blocksAfter := blocksBySource(t, e.bucket(ns))
	stops := e.finalStops(ns, leaving)
	t.Logf("scenario 4: blocks in the bucket by writer: before %v, after %v; the leaving pods stopped with %v", blocksBefore, blocksAfter, stops)
	if evs, err := e.p.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, ev := range evs.Items {
			if ev.Reason == "CancelledPrepareShutdown" {
				t.Logf("scenario 4: Event %s: %s", ev.Reason, ev.Note)
			}
		}
	}
	notFinal := 0
	for _, pod := range leaving {
		if stops[pod] != "final=true" {
			notFinal++
			// A leaving pod's stop must be final (it was a bug: the operator undid
			// the marker once the StatefulSet was shrunk).
			t.Errorf("scenario 4: %s stopped with %q, not a final stop", pod, stops[pod])
			continue
		}
		if blocksAfter[pod] <= blocksBefore[pod] {
			t.Errorf("scenario 4: %s left without uploading a block (%d before, %d after)", pod, blocksBefore[pod], blocksAfter[pod])
		}
	}
	remaining := podNames(name, 2)
	shards, err := ring(podIP(t, e.p, ns, remaining[0]))
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 2 {
		t.Errorf("scenario 4: the ring has %d members after the scale-down: %+v", len(shards), shards)
	}
	time.Sleep(time.Second)
	b.end(t, "scenario 4")
	// Leaving pods serve on while they flush, and the quorum stays a majority of RF while
	// three of five members leave.
	if n := b.errors.Load(); n > 0 {
		t.Errorf("scenario 4: %d pushes failed during the scaling: %v %v", n, b.codes, b.first)
	}
	url4 := "http://" + podIP(t, e.p, ns, remaining[1]) + ":4040"
	far := time.Now().Add(time.Hour)
	e.waitFound(url4, append(b.idsBetween(time.Time{}, down), b.idsBetween(downDone, far)...), 75*time.Second)
	lost4 := e.lostBetween(t, "scenario 4", url4, []time.Time{{}, down, downDone, far},
		[]string{"before the scale-down", "during the scale-down", "after it"}, b)
	switch {
	case lost4[0]+lost4[1]+lost4[2] == 0:
		checkStored(t, "scenario 4", url4, b.acks, b.attempted.Load(), e.perProfile)
	default:
		t.Errorf("scenario 4: profiles lost: %d acknowledged before the scale-down, %d during it, %d after it (%d leaving pods stopped without a final flush)",
			lost4[0], lost4[1], lost4[2], notFinal)
	}

	// Scenario 6: delete the Ingester: every pod flushes before the pods go.
	b6 := e.startLoad(t, ns)
	time.Sleep(3 * time.Second)
	blocksBefore = blocksBySource(t, e.bucket(ns))
	del := time.Now()
	if err := e.dyn.Resource(ingesterGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "scenario 6: the Ingester and its pods gone", func() string {
		if _, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			return "the Ingester is still there: " + e.degraded(ns, name)
		}
		pods, err := e.p.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		if len(pods.Items) > 0 {
			return fmt.Sprintf("%d pods left", len(pods.Items))
		}
		return ""
	})
	gone := time.Now()
	t.Logf("scenario 6: Ingester and pods gone %s after the delete", gone.Sub(del).Round(time.Millisecond))
	b6.end(t, "scenario 6")
	blocksAfter = blocksBySource(t, e.bucket(ns))
	t.Logf("scenario 6: blocks in the bucket by writer: before %v, after %v", blocksBefore, blocksAfter)
	for _, pod := range remaining {
		if blocksAfter[pod] <= blocksBefore[pod] {
			t.Errorf("scenario 6: %s went without uploading a block (%d before, %d after)", pod, blocksBefore[pod], blocksAfter[pod])
		}
	}
	// The bucket alone: a fresh ingester with an empty data dir on that bucket.
	port := testutil.FreePort(t)
	fresh := testutil.StartIngester(t, port, "-data-dir="+t.TempDir(), "-storage.backend=filesystem",
		"-storage.filesystem.dir="+e.bucket(ns))
	far = time.Now().Add(time.Hour)
	lost6 := e.lostBetween(t, "scenario 6 (the bucket alone)", fresh.URL, []time.Time{{}, del, gone, far},
		[]string{"before the delete", "during the deletion", "after it"}, b6)
	if lost6[0]+lost6[2] > 0 {
		t.Errorf("scenario 6: the bucket lacks %d profiles acknowledged before the delete and %d after it", lost6[0], lost6[2])
	}
	if lost6[1] > 0 {
		// The operator marks every pod for a final stop before its deletion flush,
		// so what is acknowledged during the deletion reaches the bucket too.
		t.Errorf("scenario 6: the bucket lacks %d of the %d profiles acknowledged during the deletion", lost6[1], len(b6.idsBetween(del, gone)))
	}
	// Scenario 4's profiles are in the bucket too.
	lostOld := e.lostBetween(t, "scenario 6 (the bucket alone), scenario 4's load", fresh.URL, []time.Time{{}, far},
		[]string{"all"}, b)
	if lostOld[0] > lost4[0]+lost4[1]+lost4[2] {
		t.Errorf("scenario 6: the bucket lacks %d of scenario 4's profiles, %d were lost in scenario 4", lostOld[0], lost4[0]+lost4[1]+lost4[2])
	}
	if lostOld[0]+lost6[0]+lost6[1]+lost6[2] == 0 {
		all := &load.AckLog{}
		for _, bb := range []*background{b, b6} {
			for _, a := range bb.acks.Acks() {
				all.Record(a)
			}
		}
		checkStored(t, "scenario 6 (the bucket alone)", fresh.URL, all, b.attempted.Load()+b6.attempted.Load(), e.perProfile)
	}
}
