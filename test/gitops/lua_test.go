package gitops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
