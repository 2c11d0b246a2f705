package validation

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hearth-dev/hearth/ingester/model"
)

func lbls(kv ...string) model.Labels {
	var ls model.Labels
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, model.Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls.Sort()
}

func TestUsageGroupsMatch(t *testing.T) {
	u, err := NewUsageGroups(map[string]string{
		"checkout":                   `{service_name="checkout"}`,
		"  team-pay  ":               `{service_name=~"pay.*", env!="dev"}`,
		"all":                        `{}`,
		"ns/${labels.namespace}":     `{namespace=~".+"}`,
		"${labels.env}-${labels.ns}": `{service_name="checkout"}`,
		"cpu":                        `process_cpu{}`,
		"absent-env":                 `{env=""}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels model.Labels
		want   []string
	}{
		{"static, wildcard and a template", lbls("service_name", "checkout", "namespace", "shop"), []string{"all", "checkout", "ns/shop"}},
		{"a template with both labels", lbls("service_name", "checkout", "env", "prod", "ns", "eu"), []string{"all", "checkout", "prod-eu"}},
		// env is missing: env!="dev" does not match a series without env (Pyroscope's rule).
		{"a matcher on a missing label does not match", lbls("service_name", "payments"), []string{"all"}},
		{"trimmed name, regexp and negation", lbls("service_name", "payments", "env", "prod"), []string{"all", "team-pay"}},
		{"negation refuses", lbls("service_name", "payments", "env", "dev"), []string{"all"}},
		{"an empty label value skips the template", lbls("service_name", "x", "namespace", ""), []string{"all"}},
		{"the metric name matches __name__", lbls("__name__", "process_cpu", "service_name", "x"), []string{"all", "cpu"}},
		{"a present empty label matches =\"\"", lbls("env", "", "service_name", "x"), []string{"absent-env", "all"}},
		{"no labels: only the wildcard", nil, []string{"all"}},
	} {
		got := u.Match(tc.labels)
		sort.Strings(got) // Match gives them in the order of the configured names
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Match(%s) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}

	none, err := NewUsageGroups(map[string]string{"checkout": `{service_name="checkout"}`})
	if err != nil {
		t.Fatal(err)
	}
	if got := none.Match(lbls("service_name", "other-svc")); !reflect.DeepEqual(got, []string{UsageGroupOther}) {
		t.Errorf("unmatched: %v, want [other]", got)
	}
	var nilGroups *UsageGroups
	if got := nilGroups.Match(lbls("service_name", "x")); !reflect.DeepEqual(got, []string{UsageGroupOther}) || nilGroups.Len() != 0 {
		t.Errorf("no groups: %v, want [other]", got)
	}
}

// Two groups that resolve to one name count the profile once.
func TestUsageGroupsResolvedNamesOnce(t *testing.T) {
	u, err := NewUsageGroups(map[string]string{"checkout": `{service_name="checkout"}`, "${labels.service_name}": `{}`})
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Match(lbls("service_name", "checkout")); !reflect.DeepEqual(got, []string{"checkout"}) {
		t.Errorf("got %v, want [checkout]", got)
	}
}

func TestUsageGroupsRefused(t *testing.T) {
	tooMany := map[string]string{}
	for i := 0; i <= MaxUsageGroups; i++ {
		tooMany[fmt.Sprintf("g%d", i)] = `{}`
	}
	for name, tc := range map[string]struct {
		m    map[string]string
		want string
	}{
		"more than 50":         {tooMany, "at most 50 usage groups per tenant, got 51"},
		"empty name":           {map[string]string{"  ": `{}`}, "a usage group name is empty"},
		"reserved name":        {map[string]string{"other": `{}`}, `usage group name "other" is reserved`},
		"invalid UTF-8":        {map[string]string{"a\x80": `{}`}, "not valid UTF-8"},
		"bad selector":         {map[string]string{"a": `{service_name=}`}, `usage group "a": invalid label selector`},
		"empty selector":       {map[string]string{"a": ` `}, `usage group "a": the selector is empty`},
		"bad regexp":           {map[string]string{"a": `{x=~"("}`}, `usage group "a"`},
		"unclosed placeholder": {map[string]string{"a/${labels.x": `{}`}, "is not closed"},
		"empty placeholder":    {map[string]string{"a/${labels.}": `{}`}, "names no label"},
		"bad placeholder":      {map[string]string{"${labels.a-b}": `{}`}, `"a-b" is not a label name`},
		"duplicate after trim": {map[string]string{"a": `{}`, " a": `{}`}, `usage group "a" is defined twice`},
	} {
		_, err := NewUsageGroups(tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", name, err, tc.want)
		}
	}
}

// Usage groups come from the runtime config (strictly decoded, errors naming
// the tenant and the key) and show in /runtime_config's rendering.
func TestRuntimeConfigUsageGroups(t *testing.T) {
	d := defaults(t)
	rc, err := LoadRuntimeConfig(strings.NewReader(`
overrides:
  team-a:
    distributor_usage_groups:
      checkout: '{service_name="checkout"}'
      app/${labels.service_name}: '{}'
  team-b:
    max_series_per_tenant: 5
`), d)
	if err != nil {
		t.Fatal(err)
	}
	o := NewOverrides(d, func() *RuntimeConfig { return rc })
	a := o.For("team-a").DistributorUsageGroups
	if a.Len() != 2 {
		t.Fatalf("team-a has %d usage groups, want 2", a.Len())
	}
	if got := a.Match(lbls("service_name", "checkout")); !reflect.DeepEqual(got, []string{"app/checkout", "checkout"}) { // by configured name
		t.Errorf("team-a match: %v", got)
	}
	if o.For("team-b").DistributorUsageGroups != nil || o.For("nobody").DistributorUsageGroups != nil {
		t.Error("a tenant without usage groups must have none")
	}
	diff := Diff(o.For("team-a"), &d)
	want := map[string]any{"checkout": `{service_name="checkout"}`, "app/${labels.service_name}": "{}"}
	if !reflect.DeepEqual(diff["distributor_usage_groups"], want) || len(diff) != 1 {
		t.Errorf("diff %v, want distributor_usage_groups %v only", diff, want)
	}
	if _, ok := o.For("team-a").Map()["distributor_usage_groups"]; !ok {
		t.Error("Map lacks distributor_usage_groups")
	}

	for name, tc := range map[string]struct{ doc, want string }{
		"not a map":        {"overrides:\n  a:\n    distributor_usage_groups: [x]\n", `overrides of tenant "a": distributor_usage_groups must map usage group names to series selectors`},
		"selector not str": {"overrides:\n  a:\n    distributor_usage_groups:\n      g: {x: 1}\n", `overrides of tenant "a": distributor_usage_groups must map`},
		"bad selector":     {"overrides:\n  a:\n    distributor_usage_groups:\n      g: '{x=}'\n", `overrides of tenant "a": distributor_usage_groups: usage group "g": invalid label selector`},
		"reserved":         {"overrides:\n  b:\n    distributor_usage_groups:\n      other: '{}'\n", `overrides of tenant "b": distributor_usage_groups: usage group name "other" is reserved`},
	} {
		_, err := LoadRuntimeConfig(strings.NewReader(tc.doc), d)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", name, err, tc.want)
		}
	}
}
