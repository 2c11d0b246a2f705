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
// Then the rollback, the same in reverse (the previous operator and image), checked the
// same way over both loads.
func TestRolloutFromPreviousRelease(t *testing.T) {
	testStart := time.Now()
	root, err := platform.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	prevBin, err := release.Previous(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("previous release %s (%s) at %s, ready in %s", release.PreviousName, release.PreviousCommit[:7], prevBin, time.Since(testStart).Round(time.Millisecond))
	prev := side{image: "hearth:" + release.PreviousName, bin: prevBin, previous: true}
	e := newScenarioEnv(t, func(o *platform.Options) {
		o.Operator = false // the previous release's operator comes first, below
		o.ImageBinaries = map[string]string{prev.image: prev.bin}
	})
	cur := side{image: "hearth:dev", bin: e.p.Opts.Hearth}
	op, err := e.p.StartOperator("hearth-operator-"+release.PreviousName, prev.bin)
	if err != nil {
		t.Fatal(err)
	}
	e.p.Operator = op
	const ns, name = "upgrade", "hearth"
	e.apply(t, ns, name, 3, 3, map[string]any{"image": prev.image})
	pods := podNames(name, 3)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the last operator %s:\n%s", e.p.Operator.Name, lastBytes(e.p.Operator.Log(), 20000))
		}
	})

	// Every pod really runs the previous release: its process's executable is that
	// binary, and `hearth version` of it names the release.
	e.runAll(t, ns, pods, prev)
	before := tokens(t, podIP(t, e.p, ns, pods[0]))
	b := e.startLoadOn(t, ns, name, 0)
	time.Sleep(3 * time.Second)
	onPrevious := len(b.acks.Acks())
	if onPrevious == 0 {
		t.Fatalf("no push acknowledged by the %s ring", release.PreviousName)
	}

	// The upgrade: the previous operator stops, spec.image moves to this build, this
	// build's operator starts.
	e.roll(t, ns, name, pods, "upgrade", prev, cur, "hearth-operator", cur.bin)
	time.Sleep(2 * time.Second) // a little load on the upgraded ring
	b.end(t, "upgrade")
	t.Logf("upgrade: %d acknowledged on %s before the upgrade, %d in all; %d pushes, %d failed %v",
		onPrevious, release.PreviousName, len(b.acks.Acks()), b.pushes.Load(), b.errors.Load(), b.codes)
	e.runAll(t, ns, pods, cur)
	if n := b.errors.Load(); n > 0 {
		t.Errorf("upgrade: %d pushes failed: %v %v", n, b.codes, b.first)
	}
	e.sameTokens(t, "upgrade", ns, pods, before)
	e.checkAll(t, "after the upgrade", "http://"+podIP(t, e.p, ns, pods[0])+":4040", b)

	// Why the operator and the image move together (docs/upgrading.md): the previous
	// release refuses the config this operator renders.
	e.previousRefusesConfig(t, ns, name, prev.bin)

	// The rollback (docs/upgrading.md), the same in reverse: this operator stops,
	// spec.image goes back to the previous release, its operator starts; the previous
	// release replays this build's WAL and reads its blocks.
	b2 := e.startLoadOn(t, ns, name, 0)
	time.Sleep(2 * time.Second)
	e.roll(t, ns, name, pods, "rollback", cur, prev, "hearth-operator-"+release.PreviousName+"-again", prev.bin)
	time.Sleep(2 * time.Second)
	b2.end(t, "rollback")
	e.runAll(t, ns, pods, prev)
	if n := b2.errors.Load(); n > 0 {
		t.Errorf("rollback: %d pushes failed: %v %v", n, b2.codes, b2.first)
	}
	e.sameTokens(t, "rollback", ns, pods, before)
	e.checkAllOf(t, "after the rollback", "http://"+podIP(t, e.p, ns, pods[0])+":4040", b, b2)
	t.Logf("test took %s", time.Since(testStart).Round(time.Millisecond))
}

// side is one release in the test: an image, the binary it runs (its operator's too),
// and whether it is the previous release.
type side struct {
	image, bin string
	previous   bool
}

// roll swaps the operator for opBin's and spec.image from from's to to's while it is
// stopped, then waits until the new operator reports the rollout Complete for that
// generation (every pod on the new image, Ready, ACTIVE). It checks one pod at a time
// and that old and new members were Ready together at some moment, and logs the figures.
func (e *scenarioEnv) roll(t *testing.T, ns, name string, pods []string, what string, from, to side, opName, opBin string) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	e.p.Operator.Stop(10 * time.Second)
	e.patchSpec(t, ns, name, map[string]any{"image": to.image})
	ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen := ing.GetGeneration()
	op, err := e.p.StartOperator(opName, opBin)
	if err != nil {
		t.Fatal(err)
	}
	e.p.Operator = op
	s := e.sample(ns, name, 3)
	var mixed, samples atomic.Int64
	stopMixed := poll(500*time.Millisecond, func() {
		ready := map[string]bool{}
		for _, ip := range e.readyIPsOf(ns, name) {
			ready[ip] = true
		}
		var old, neu int
		for _, pod := range pods {
			p, err := e.p.Clientset.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
			if err != nil || !ready[p.Status.PodIP] {
				continue
			}
			exe, err := e.p.Agent.Executable(ns, pod, "ingester")
			switch {
			case err != nil:
			case sameFile(exe, from.bin):
				old++
			case sameFile(exe, to.bin):
				neu++
			}
		}
		samples.Add(1)
		if old > 0 && neu > 0 {
			mixed.Add(1)
		}
	})
	eventually(t, 5*time.Minute, what+": the rollout to "+to.image+" Complete", func() string {
		ing, err := e.dyn.Resource(ingesterGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
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
	t.Logf("%s %s → %s through the operator: Complete %s after the operator swap (under load); at most %d pods not Ready and %d in flight at once (%d samples; worst: %s); old and new members Ready together in %d of %d samples",
		what, from.image, to.image, took.Round(time.Millisecond), s.maxNotReady.Load(), s.maxInFlight.Load(), s.samples.Load(), s.worst.Load(), mixed.Load(), samples.Load())
	if mixed.Load() == 0 {
		t.Errorf("%s: no moment with old and new members Ready together in %d samples: not a rolling one", what, samples.Load())
	}
	if s.maxNotReady.Load() > 1 {
		t.Errorf("%s: %d pods were not Ready at once: %s", what, s.maxNotReady.Load(), s.worst.Load())
	}
	if s.maxInFlight.Load() > 1 {
		t.Errorf("%s: status.rollout listed %d pods in flight at once", what, s.maxInFlight.Load())
	}
}

// runAll checks that every pod's ingester process executes s's binary, and that its
// `hearth version` names the previous release exactly when s is it.
func (e *scenarioEnv) runAll(t testing.TB, ns string, pods []string, s side) {
	t.Helper()
	for _, pod := range pods {
		exe, version := e.runs(t, ns, pod)
		if !sameFile(exe, s.bin) || strings.Contains(version, release.PreviousName) != s.previous {
			t.Errorf("%s (image %s) runs %s (%q), want %s", pod, s.image, exe, version, s.bin)
		}
	}
}

// sameTokens checks that every pod kept the tokens it had in before.
func (e *scenarioEnv) sameTokens(t testing.TB, what, ns string, pods []string, before map[string][]uint32) {
	t.Helper()
	after := tokens(t, podIP(t, e.p, ns, pods[1]))
	for _, pod := range pods {
		if len(before[pod]) == 0 || !slices.Equal(before[pod], after[pod]) {
			t.Errorf("%s: %s has other tokens (%d before, %d after)", what, pod, len(before[pod]), len(after[pod]))
		}
	}
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
		if v.ConfigMap != nil && v.Name == "config" { // not the overrides volume
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
