package gitops

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/argoproj/gitops-engine/pkg/diff"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The health runner is Argo CD's: a script that needs a library Argo CD does not open
// fails here as it would there; the shipped script does not.
func TestLuaHealthAsArgoCDRunsIt(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "argocd-health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{
		"metadata": map[string]any{"generation": int64(2)},
		"status": map[string]any{"observedGeneration": int64(2), "conditions": []any{
			map[string]any{"type": "Available", "status": "True", "reason": "AllReady", "message": "3/3 ready"},
			map[string]any{"type": "Progressing", "status": "False", "reason": "Complete"},
		}},
	}
	h, err := luaHealth(string(b), obj)
	if err != nil || h.Status != "Healthy" || h.Message != "AllReady: 3/3 ready" {
		t.Fatalf("health %+v, %v", h, err)
	}
	if _, err := luaHealth(`return {status = string.lower("Healthy")}`, obj); err == nil || !strings.Contains(err.Error(), "string") {
		t.Fatalf("a script using the string library ran (%v): Argo CD does not open it", err)
	}
	if h, err := luaHealth(`return {status = "Fine"}`, obj); err != nil || h.Status != "Unknown" {
		t.Fatalf("an invalid status gave %+v, %v", h, err)
	}
}

// What the sync applies: the chart (CRD included) and both samples.
func TestManifests(t *testing.T) {
	chart, err := renderChart("hearth-system")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range chart {
		kinds[o.GetKind()]++
	}
	t.Logf("chart: %v", kinds)
	if kinds["CustomResourceDefinition"] != 1 || kinds["Deployment"] != 1 {
		t.Fatalf("chart objects %v", kinds)
	}
	samples, err := readSamples("profiling")
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 2 || samples[0].GetNamespace() != "profiling" {
		t.Fatalf("samples %v", samples)
	}
}

// fixedRunner predicts a fixed live object (the dry-run apply's answer).
type fixedRunner struct{ predicted map[string]any }

func (f fixedRunner) Run(context.Context, *unstructured.Unstructured, string) (string, error) {
	b, err := json.Marshal(f.predicted)
	return string(b), err
}

// The drift check's wiring of gitops-engine's server-side diff: a predicted live object
// that differs from the live one (the operator changed a field the manifest sets) is
// drift; an equal one, whatever the managed fields, is not.
func TestServerSideDiffWiring(t *testing.T) {
	live := map[string]any{"apiVersion": "hearth.dev/v1alpha1", "kind": "Ingester",
		"metadata": map[string]any{"name": "hearth", "namespace": "profiling", "managedFields": []any{map[string]any{"manager": "hearth-operator"}}},
		"spec":     map[string]any{"image": "hearth:dev", "replicas": int64(3)}}
	want := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "hearth.dev/v1alpha1", "kind": "Ingester",
		"metadata": map[string]any{"name": "hearth", "namespace": "profiling"}, "spec": map[string]any{"image": "hearth:dev"}}}
	for _, c := range []struct {
		replicas int64
		drift    bool
	}{{3, false}, {5, true}} {
		predicted := (&unstructured.Unstructured{Object: live}).DeepCopy().Object
		predicted["spec"].(map[string]any)["replicas"] = c.replicas
		res, err := diff.Diff(want, (&unstructured.Unstructured{Object: live}).DeepCopy(), diff.WithServerSideDiff(true),
			diff.WithServerSideDryRunner(fixedRunner{predicted}), diff.WithManager(argoManager), diff.WithIgnoreMutationWebhook(false))
		if err != nil {
			t.Fatal(err)
		}
		if res.Modified != c.drift {
			t.Fatalf("predicted replicas %d: Modified %v\npredicted %s\nlive %s", c.replicas, res.Modified, res.PredictedLive, res.NormalizedLive)
		}
	}
}
