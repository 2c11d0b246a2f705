package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hearth-dev/hearth/internal/release"
	"github.com/hearth-dev/hearth/test/e2e/platform"
)

// TestRolloutFromPreviousRelease is a real version upgrade through the operator (issue
// 24): a 3-pod Ingester (replication factor 3, a shared filesystem bucket) runs the
// previous release (internal/release builds it from this repository's history; the
// image hearth:<previous> runs that binary), created by the previous release's operator,
// as a user of that release has it. Under load, the operator is upgraded to this build
// and spec.image set to this build's image in the same step (docs/upgrading.md: the
// previous release's ingesters refuse the config this operator renders, so the operator
// must not roll them on the old image); the operator rolls the pods one at a time, old
// and new members serving together, until the rollout is Complete. Every acknowledged
// profile is then counted exactly once, no push failed, and each pod kept its tokens.
func TestRolloutFromPreviousRelease(t *testing.T) {
	testStart := time.Now()
	root, err := platform.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	prev, err := release.Previous(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("previous release %s (%s) at %s, ready in %s", release.PreviousName, release.PreviousCommit[:7], prev, time.Since(testStart).Round(time.Millisecond))
	prevImage := "hearth:" + release.PreviousName
	e := newScenarioEnv(t, func(o *platform.Options) {
		o.Operator = false // the previous release's operator comes first, below
		o.ImageBinaries = map[string]string{prevImage: prev}
	})
	cur := e.p.Opts.Hearth
	oldOp, err := e.p.StartOperator("hearth-operator-"+release.PreviousName, prev)
	if err != nil {
		t.Fatal(err)
	}
	e.p.Operator = oldOp
	const ns, name = "upgrade", "hearth"
	e.apply(t, ns, name, 3, 3, map[string]any{"image": prevImage})
	pods := podNames(name, 3)

	// Every pod really runs the previous release: its process's executable is that
	// binary, and `hearth version` of it names the release.
	for _, pod := range pods {
		exe, version := e.runs(t, ns, pod)
		if !sameFile(exe, prev) || !strings.Contains(version, release.PreviousName) {
			t.Fatalf("%s (image %s) runs %s, %q; want %s, %s", pod, prevImage, exe, version, prev, release.PreviousName)
		}
	}
	before := tokens(t, podIP(t, e.p, ns, pods[0]))
	b := e.startLoadOn(t, ns, name, 0)
	time.Sleep(3 * time.Second)
	if len(b.acks.Acks()) == 0 {
		t.Fatalf("no push acknowledged by the %s ring", release.PreviousName)
	}
	onPrevious := len(b.acks.Acks())

	// The upgrade: the previous operator stops, spec.image moves to this build, this
	// build's operator starts.
	start := time.Now()
	oldOp.Stop(10 * time.Second)
	e.patchSpec(t, ns, name, map[string]any{"image": "hearth:dev"})
	ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen := ing.GetGeneration()
	newOp, err := e.p.StartOperator("hearth-operator", "")
	if err != nil {
		t.Fatal(err)
	}
	e.p.Operator = newOp
	s := e.sample(ns, name, 3)
	// Old and new members serving together: a moment when Ready pods run both binaries.
	var mixed, samples atomic.Int64
	stopMixed := poll(500*time.Millisecond, func() {
		ready := map[string]bool{}
		for _, ip := range e.readyIPsOf(ns, name) {
			ready[ip] = true
		}
		var old, neu int
		for _, pod := range pods {
			p, err := e.p.Clientset.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
			if err != nil || !ready[p.Status.PodIP] {
				continue
			}
			exe, err := e.p.Agent.Executable(ns, pod, "ingester")
			switch {
			case err != nil:
			case sameFile(exe, prev):
				old++
			case sameFile(exe, cur):
				neu++
			}
		}
		samples.Add(1)
		if old > 0 && neu > 0 {
			mixed.Add(1)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", newOp.Name, lastBytes(newOp.Log(), 20000))
		}
	})
	eventually(t, 5*time.Minute, "the rollout to hearth:dev Complete", func() string {
		ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if msg := e.settled(ns, name, 3); msg != "" {
			st, _, _ := unstructured.NestedMap(ing.Object, "status")
			return fmt.Sprintf("%s; status %v", msg, st)
		}
		if og, _, _ := unstructured.NestedInt64(ing.Object, "status", "observedGeneration"); og != gen {
			return fmt.Sprintf("status describes generation %d, want %d", og, gen)
		}
		if c := e.condition(ns, name, "Progressing"); !strings.HasPrefix(c, "False Complete") {
			return "Progressing: " + c
		}
		return ""
	})
	took := time.Since(start)
	stopMixed()
	s.end()
	time.Sleep(2 * time.Second) // a little load on the upgraded ring
	b.end(t, "upgrade")
	t.Logf("rollout %s → hearth:dev through the operator: Complete %s after the operator swap (under load); at most %d pods not Ready and %d in flight at once (%d samples; worst: %s); old and new members Ready together in %d of %d samples",
		prevImage, took.Round(time.Millisecond), s.maxNotReady.Load(), s.maxInFlight.Load(), s.samples.Load(), s.worst.Load(), mixed.Load(), samples.Load())
	t.Logf("load: %d acknowledged on %s before the upgrade, %d in all; %d pushes, %d failed %v",
		onPrevious, release.PreviousName, len(b.acks.Acks()), b.pushes.Load(), b.errors.Load(), b.codes)

	for _, pod := range pods {
		exe, version := e.runs(t, ns, pod)
		if !sameFile(exe, cur) || strings.Contains(version, release.PreviousName) {
			t.Errorf("%s runs %s, %q after the upgrade; want %s", pod, exe, version, cur)
		}
	}
	if mixed.Load() == 0 {
		t.Errorf("no moment with old and new members Ready together in %d samples: not a rolling upgrade", samples.Load())
	}
	if s.maxNotReady.Load() > 1 {
		t.Errorf("%d pods were not Ready at once during the upgrade: %s", s.maxNotReady.Load(), s.worst.Load())
	}
	if s.maxInFlight.Load() > 1 {
		t.Errorf("status.rollout listed %d pods in flight at once", s.maxInFlight.Load())
	}
	if n := b.errors.Load(); n > 0 {
		t.Errorf("%d pushes failed during the upgrade: %v %v", n, b.codes, b.first)
	}
	after := tokens(t, podIP(t, e.p, ns, pods[1]))
	for _, pod := range pods {
		if len(before[pod]) == 0 || !slices.Equal(before[pod], after[pod]) {
			t.Errorf("%s has other tokens after the upgrade (%d before, %d after)", pod, len(before[pod]), len(after[pod]))
		}
	}
	e.checkAll(t, "after the upgrade", "http://"+podIP(t, e.p, ns, pods[0])+":4040", b)

	// Why the operator and the image move together (docs/upgrading.md): the previous
	// release refuses the config this operator renders.
	e.previousRefusesConfig(t, ns, name, prev)
	t.Logf("test took %s", time.Since(testStart).Round(time.Millisecond))
}

// runs returns the executable of the pod's ingester process and its `version` output.
func (e *scenarioEnv) runs(t testing.TB, ns, pod string) (exe, version string) {
	t.Helper()
	exe, err := e.p.Agent.Executable(ns, pod, "ingester")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", exe, err, out)
	}
	return exe, strings.TrimSpace(string(out))
}

// sameFile says whether two paths name one file.
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// previousRefusesConfig runs the previous release's ingester on the config file this
// operator rendered for the Ingester: it must exit, naming the key it does not know
// (server.internal_listen_port). The day it starts, docs/upgrading.md's upgrade order
// (and rollback path) can be relaxed.
func (e *scenarioEnv) previousRefusesConfig(t testing.TB, ns, name, prev string) {
	t.Helper()
	ctx := context.Background()
	sts, err := e.p.Clientset.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmName := ""
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	cm, err := e.p.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the config of %s: %v", name, err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hearth.yaml")
	if err := os.WriteFile(cfg, []byte(cm.Data["hearth.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(rctx, prev, "ingester", "-config.file="+cfg, "-data-dir="+filepath.Join(dir, "data"),
		"-server.http-listen-address=127.0.0.1", "-memberlist.bind-addr=127.0.0.1", "-memberlist.advertise-addr=127.0.0.1",
		"-ingester.ring.instance-addr=127.0.0.1")
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	if rctx.Err() != nil || err == nil || !strings.Contains(msg, "internal_listen_port") {
		t.Errorf("the previous release on this operator's config (%s): %v %s\n"+
			"it no longer refuses it: update docs/upgrading.md (operator and image need not move together)", cmName, err, lastBytes(msg, 500))
		return
	}
	t.Logf("finding: the previous release refuses this operator's config %s: %s", cmName, msg)
}
