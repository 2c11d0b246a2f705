package gitops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hearth-dev/hearth/controllers"
)

// TestArgoCDSyncsTheChartAndTheSamples: the chart (Application "hearth-operator") and the
// samples (Application "hearth", the name of the minimal sample's Ingester, so that a
// child labelled app.kubernetes.io/instance: hearth would be taken for the app's) are
// synced as Argo CD does; the operator reconciles; then
//   - the zoned sample, whose Secret and StorageClass do not exist yet, is Degraded, and
//     Healthy once they do; the minimal one turns Healthy;
//   - a server-side diff of every object of both Applications shows no drift;
//   - no object the operator made is one Argo CD would prune (claims especially);
//   - a new image synced from "Git" rolls out: the health goes Progressing, then Healthy
//     with every pod on the new image, and nothing drifts afterwards.
func TestArgoCDSyncsTheChartAndTheSamples(t *testing.T) {
	ctx := context.Background()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "argocd-health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	p := startPlatform(t)

	chartObjs, err := renderChart("hearth-system")
	if err != nil {
		t.Fatal(err)
	}
	operatorApp := app{name: "hearth-operator", namespace: "hearth-system", objs: chartObjs}
	if err := p.sync(ctx, operatorApp); err != nil {
		t.Fatalf("syncing the chart: %v", err)
	}
	p.startOperator(t) // the chart's Deployment, run in-process: no kubelet runs its image

	samples, err := readSamples("profiling")
	if err != nil {
		t.Fatal(err)
	}
	samplesApp := app{name: "hearth", namespace: "profiling", objs: samples}
	p.kubelet(t, samplesApp.namespace)
	if err := p.sync(ctx, samplesApp); err != nil {
		t.Fatalf("syncing the samples: %v", err)
	}

	// The zoned sample names a Secret and a StorageClass that are not there: Degraded.
	wantHealth(t, p, script, "profiling", "hearth-zoned", "Degraded", "hearth-s3")
	wantHealth(t, p, script, "profiling", "hearth", "Healthy", "")
	// The cluster's prerequisites (not in Git): then it turns Healthy.
	if err := p.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "profiling", Name: "hearth-s3"},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}}); err != nil {
		t.Fatal(err)
	}
	expand := true
	if err := p.c.Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "standard"}, Provisioner: "example.com/none",
		AllowVolumeExpansion: &expand}); err != nil {
		t.Fatal(err)
	}
	wantHealth(t, p, script, "profiling", "hearth-zoned", "Healthy", "")

	noDrift(t, p, operatorApp)
	noDrift(t, p, samplesApp)
	for _, a := range []app{operatorApp, samplesApp} {
		prunable, err := p.argoOwned(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if len(prunable) > 0 {
			t.Errorf("Argo CD would prune these from Application %s: %v", a.name, prunable)
		}
	}
	// The claims exist (the check above looked at them) and name their Ingester.
	var pvcs corev1.PersistentVolumeClaimList
	if err := p.c.List(ctx, &pvcs, client.InNamespace("profiling")); err != nil {
		t.Fatal(err)
	}
	if len(pvcs.Items) != 3+6 {
		t.Fatalf("%d claims, want 9", len(pvcs.Items))
	}

	// A commit changes the minimal sample's image; Argo CD syncs it.
	for _, o := range samplesApp.objs {
		if o.GetName() == "hearth" {
			if err := unstructuredSet(o.Object, "hearth:next", "spec", "image"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.sync(ctx, samplesApp); err != nil {
		t.Fatalf("syncing the new image: %v", err)
	}
	var seen []string
	eventually(t, "the rollout Healthy with every pod on the new image", func() error {
		h, err := p.ingesterHealth(ctx, script, "profiling", "hearth")
		if err != nil {
			return err
		}
		if len(seen) == 0 || seen[len(seen)-1] != h.Status {
			seen = append(seen, h.Status)
			t.Logf("health %s: %s", h.Status, h.Message)
		}
		if h.Status == "Degraded" {
			t.Fatalf("Degraded during the rollout: %s", h.Message)
		}
		var pods corev1.PodList
		if err := p.c.List(ctx, &pods, client.InNamespace("profiling"), client.MatchingLabels{controllers.LabelInstance: "hearth"}); err != nil {
			return err
		}
		var old []string
		for _, pod := range pods.Items {
			if pod.Spec.Containers[0].Image != "hearth:next" {
				old = append(old, pod.Name)
			}
		}
		if h.Status != "Healthy" || len(old) > 0 || len(pods.Items) != 3 {
			return fmt.Errorf("health %s (%s), %d pods, on the old image: %v", h.Status, h.Message, len(pods.Items), old)
		}
		return nil
	})
	if len(seen) < 2 || seen[0] != "Progressing" || seen[len(seen)-1] != "Healthy" {
		t.Fatalf("health through the rollout: %v, want Progressing ... Healthy", seen)
	}
	noDrift(t, p, samplesApp)
}

func wantHealth(t *testing.T, p *platform, script, ns, name, status, inMessage string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s/%s %s", ns, name, status), func() error {
		h, err := p.ingesterHealth(context.Background(), script, ns, name)
		if err != nil {
			return err
		}
		if h.Status != status || !strings.Contains(h.Message, inMessage) {
			return fmt.Errorf("health %s: %s", h.Status, h.Message)
		}
		return nil
	})
}

// noDrift waits until the operator has settled, then wants no difference at all.
func noDrift(t *testing.T, p *platform, a app) {
	t.Helper()
	d, err := p.drift(context.Background(), a)
	if err != nil {
		t.Fatalf("diff of %s: %v", a.name, err)
	}
	if len(d) > 0 {
		t.Fatalf("Application %s OutOfSync:\n%s", a.name, strings.Join(d, "\n"))
	}
}

func unstructuredSet(obj map[string]any, value any, path ...string) error {
	m := obj
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return fmt.Errorf("no %s in %v", k, path)
		}
		m = next
	}
	m[path[len(path)-1]] = value
	return nil
}
