package controllers

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

func withOverrides(ing *hearthv1.Ingester, tenants map[string]string) *hearthv1.Ingester {
	ing = ing.DeepCopy()
	ing.Spec.Overrides = map[string]hearthv1.TenantOverrides{}
	for t, js := range tenants {
		ing.Spec.Overrides[t] = hearthv1.TenantOverrides{Raw: []byte(js)}
	}
	return ing
}

// TestOverridesYAML: spec.overrides becomes the ingester's runtime config, tenants and
// keys sorted, numbers as written (a large integer stays an integer).
func TestOverridesYAML(t *testing.T) {
	ing := withOverrides(fixtures()["minimal"], map[string]string{
		"team-b": `{"reject_older_than": "6h", "max_profile_size_bytes": 16777216}`,
		"team-a": `{"max_series_per_tenant": 500000, "ingestion_rate_mb": 2.5}`,
		"empty":  `{}`,
	})
	got, err := OverridesYAML(ing)
	if err != nil {
		t.Fatal(err)
	}
	body := string(got[strings.Index(string(got), "overrides:"):])
	want := `overrides:
    empty: {}
    team-a:
        ingestion_rate_mb: 2.5
        max_series_per_tenant: 500000
    team-b:
        max_profile_size_bytes: 16777216
        reject_older_than: 6h
`
	if body != want {
		t.Errorf("rendered\n%s\nwant\n%s", body, want)
	}
	if !strings.HasPrefix(string(got), "# Rendered by hearth-operator") {
		t.Errorf("no header: %s", got)
	}

	none, err := OverridesYAML(fixtures()["minimal"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(none), "overrides: {}\n") {
		t.Errorf("without spec.overrides: %s", none)
	}
}

// TestOverridesYAMLInvalid: what the ingester would refuse is an *InvalidOverridesError
// that names the tenant and the reason.
func TestOverridesYAMLInvalid(t *testing.T) {
	for name, c := range map[string]struct {
		tenants map[string]string
		want    []string
	}{
		"unknown key":     {map[string]string{"team-a": `{"max_series": 5}`}, []string{`tenant "team-a"`, "max_series"}},
		"negative":        {map[string]string{"team-a": `{"max_series_per_tenant": -1}`}, []string{`tenant "team-a"`, "max_series_per_tenant must not be negative"}},
		"wrong type":      {map[string]string{"team-a": `{"max_series_per_tenant": "many"}`}, []string{`tenant "team-a"`, "many"}},
		"bad duration":    {map[string]string{"team-a": `{"reject_older_than": "forever"}`}, []string{`tenant "team-a"`, "forever"}},
		"not an object":   {map[string]string{"team-a": `[1]`}, []string{`tenant "team-a"`, "object"}},
		"invalid tenant":  {map[string]string{"team a": `{}`}, []string{`tenant "team a"`, "allowed are letters"}},
		"federated id":    {map[string]string{"a|b": `{}`}, []string{`"a|b"`, "federated"}},
		"flamegraph max":  {map[string]string{"t": `{"max_flamegraph_nodes_max": 100}`}, []string{`tenant "t"`, "max_flamegraph_nodes_default 8192 is larger than max_flamegraph_nodes_max 100"}},
		"one bad of many": {map[string]string{"good": `{"max_series_per_tenant": 5}`, "zz-bad": `{"nope": 1}`}, []string{`tenant "zz-bad"`, "nope"}},
	} {
		t.Run(name, func(t *testing.T) {
			ing := withOverrides(fixtures()["minimal"], c.tenants)
			_, err := OverridesYAML(ing)
			var inv *InvalidOverridesError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v, want an *InvalidOverridesError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := RenderOverridesConfigMap(ing); err == nil {
				t.Error("RenderOverridesConfigMap rendered an invalid spec.overrides")
			}
		})
	}
}

// TestOverridesDoNotChangePods: the overrides reach the pods through their own ConfigMap,
// mounted as a directory and named by -runtime-config.file; changing them changes that
// ConfigMap only, never a StatefulSet (no rollout, no restart).
func TestOverridesDoNotChangePods(t *testing.T) {
	for _, name := range []string{"minimal", "zones"} {
		before := fixtures()[name]
		after := withOverrides(before, map[string]string{"team-a": `{"max_series_per_tenant": 2}`})
		a, err := Render(before)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Render(after)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: spec.overrides changed the rendered children", name)
		}
		cmA, err := RenderOverridesConfigMap(before)
		if err != nil {
			t.Fatal(err)
		}
		cmB, err := RenderOverridesConfigMap(after)
		if err != nil {
			t.Fatal(err)
		}
		if cmA.Name != cmB.Name || cmA.Name != before.Name+"-overrides" || cmA.Data[OverridesFile] == cmB.Data[OverridesFile] {
			t.Errorf("%s: overrides ConfigMaps %s and %s, data equal %v", name, cmA.Name, cmB.Name, cmA.Data[OverridesFile] == cmB.Data[OverridesFile])
		}
		if cmA.Immutable != nil && *cmA.Immutable {
			t.Errorf("%s: the overrides ConfigMap is immutable", name)
		}
		for _, obj := range b {
			sts, ok := obj.(*appsv1.StatefulSet)
			if !ok {
				continue
			}
			checkOverridesMount(t, sts, cmB.Name)
		}
	}
}

func checkOverridesMount(t *testing.T, sts *appsv1.StatefulSet, cmName string) {
	t.Helper()
	spec := sts.Spec.Template.Spec
	found := false
	for _, v := range spec.Volumes {
		if v.Name == OverridesVolume {
			found = v.ConfigMap != nil && v.ConfigMap.Name == cmName && len(v.ConfigMap.Items) == 0
		}
	}
	if !found {
		t.Errorf("%s: no volume %s of ConfigMap %s: %+v", sts.Name, OverridesVolume, cmName, spec.Volumes)
	}
	c := spec.Containers[0]
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.Name == OverridesVolume {
			if m.SubPath != "" || m.MountPath != OverridesDir {
				t.Errorf("%s: overrides mounted at %s subPath %q: the kubelet never updates a subPath mount", sts.Name, m.MountPath, m.SubPath)
			}
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("%s: the overrides volume is not mounted", sts.Name)
	}
	want := "-runtime-config.file=" + OverridesDir + "/" + OverridesFile
	if !strings.Contains(strings.Join(c.Args, " "), want) {
		t.Errorf("%s: args %v lack %s", sts.Name, c.Args, want)
	}
}
