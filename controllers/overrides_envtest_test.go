package controllers

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// spec.overrides against a real API server: the CRD keeps each tenant's object as
// written; a valid edit changes the overrides ConfigMap and not the StatefulSet (no
// rollout); an invalid edit is Degraded (InvalidOverrides) with a Warning Event, and the
// ConfigMap keeps the last valid overrides; fixing it clears the condition.
func TestOverridesEditsReachTheConfigMapOnly(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	const name = "ov"
	ing := newIngester(ns, name)
	ing.Spec.Overrides = map[string]hearthv1.TenantOverrides{"team-a": {Raw: []byte(`{"max_series_per_tenant":1000}`)}}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	p.wantCondition(t, ns, name, hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
	if got := string(p.get(t, ns, name).Spec.Overrides["team-a"].Raw); got != `{"max_series_per_tenant":1000}` {
		t.Fatalf("the API server stored team-a's overrides as %s", got)
	}
	overrides := func() string {
		cm := &corev1.ConfigMap{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-overrides"}, cm); err != nil {
			return "error: " + err.Error()
		}
		return cm.Data[OverridesFile]
	}
	waitOverrides := func(what, want string) string {
		t.Helper()
		var got string
		eventually(t, what, func() error {
			if got = overrides(); !strings.Contains(got, want) {
				return fmt.Errorf("the overrides ConfigMap holds:\n%s", got)
			}
			return nil
		})
		return got
	}
	waitOverrides("the first overrides rendered", "max_series_per_tenant: 1000")
	sts := &appsv1.StatefulSet{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sts); err != nil {
		t.Fatal(err)
	}
	checkOverridesMount(t, sts, name+"-overrides")
	gen, template := sts.Generation, sts.Spec.Template.DeepCopy()

	// A valid edit: the ConfigMap changes, the StatefulSet does not.
	p.mutate(t, ns, name, func(i *hearthv1.Ingester) {
		i.Spec.Overrides["team-a"] = hearthv1.TenantOverrides{Raw: []byte(`{"max_series_per_tenant":2,"ingestion_rate_mb":4}`)}
	})
	good := waitOverrides("the edit rendered", "max_series_per_tenant: 2\n")
	if !strings.Contains(good, "ingestion_rate_mb: 4") {
		t.Fatalf("the overrides ConfigMap lacks ingestion_rate_mb:\n%s", good)
	}
	p.wantCondition(t, ns, name, hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sts); err != nil {
		t.Fatal(err)
	}
	if sts.Generation != gen || !equality.Semantic.DeepEqual(&sts.Spec.Template, template) {
		t.Fatalf("an overrides edit changed the StatefulSet: generation %d → %d", gen, sts.Generation)
	}

	// An invalid edit (a misspelt key): Degraded with the key named, a Warning Event, the
	// ConfigMap unchanged.
	p.mutate(t, ns, name, func(i *hearthv1.Ingester) {
		i.Spec.Overrides["team-b"] = hearthv1.TenantOverrides{Raw: []byte(`{"max_series_per_tennant":5}`)}
	})
	st := p.wantCondition(t, ns, name, hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonInvalidOverrides)
	if c := condition(st, hearthv1.ConditionDegraded); !strings.Contains(c.Message, `tenant "team-b"`) || !strings.Contains(c.Message, "max_series_per_tennant") {
		t.Errorf("Degraded does not name the tenant and the key: %s", c.Message)
	}
	p.wantEventFor(t, ns, name, ReasonInvalidOverrides, "max_series_per_tennant")
	if got := overrides(); got != good {
		t.Fatalf("an invalid edit changed the overrides ConfigMap:\n%s\nwas:\n%s", got, good)
	}
	// A negative limit, after the misspelling is fixed: still refused, still the last valid one.
	p.mutate(t, ns, name, func(i *hearthv1.Ingester) {
		i.Spec.Overrides["team-b"] = hearthv1.TenantOverrides{Raw: []byte(`{"max_series_per_tenant":-5}`)}
	})
	st = p.wantCondition(t, ns, name, hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonInvalidOverrides)
	if c := condition(st, hearthv1.ConditionDegraded); !strings.Contains(c.Message, "must not be negative") {
		t.Errorf("Degraded does not say why: %s", c.Message)
	}
	if got := overrides(); got != good {
		t.Fatalf("an invalid edit changed the overrides ConfigMap:\n%s\nwas:\n%s", got, good)
	}

	// Fixed: applied, Degraded clears, and still no change to the StatefulSet.
	p.mutate(t, ns, name, func(i *hearthv1.Ingester) {
		i.Spec.Overrides["team-b"] = hearthv1.TenantOverrides{Raw: []byte(`{"max_series_per_tenant":5}`)}
	})
	p.wantCondition(t, ns, name, hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
	waitOverrides("the fix rendered", "team-b:\n        max_series_per_tenant: 5")
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sts); err != nil {
		t.Fatal(err)
	}
	if sts.Generation != gen {
		t.Fatalf("overrides edits changed the StatefulSet: generation %d → %d", gen, sts.Generation)
	}
}

// An Ingester created with invalid overrides still gets its overrides ConfigMap (without
// overrides), so that its pods start.
func TestInvalidOverridesAtCreation(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	const name = "ovbad"
	ing := newIngester(ns, name)
	ing.Spec.Overrides = map[string]hearthv1.TenantOverrides{"team a": {Raw: []byte(`{}`)}}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	p.wantCondition(t, ns, name, hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonInvalidOverrides)
	eventually(t, "an empty overrides ConfigMap", func() error {
		cm := &corev1.ConfigMap{}
		if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-overrides"}, cm); err != nil {
			return err
		}
		if !strings.HasSuffix(cm.Data[OverridesFile], "overrides: {}\n") {
			return fmt.Errorf("it holds:\n%s", cm.Data[OverridesFile])
		}
		return nil
	})
}
