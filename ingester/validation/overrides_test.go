package validation

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func defaults(t *testing.T) Limits {
	var l Limits
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	l.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRuntimeConfigOverridesInheritDefaults(t *testing.T) {
	d := defaults(t)
	rc, err := LoadRuntimeConfig(strings.NewReader(`
overrides:
  team-a:
    max_series_per_tenant: 5
    reject_older_than: 3h
    max_query_length: 48h
  team-b: {}
`), d)
	if err != nil {
		t.Fatal(err)
	}
	o := NewOverrides(d, func() *RuntimeConfig { return rc })
	a := o.For("team-a")
	if a.MaxSeriesPerTenant != 5 || a.RejectOlderThan != 3*time.Hour || a.MaxQueryLength != 48*time.Hour {
		t.Fatalf("team-a overrides not applied: %+v", a)
	}
	if a.MaxProfileSizeBytes != d.MaxProfileSizeBytes || a.MaxLabelNamesPerSeries != d.MaxLabelNamesPerSeries {
		t.Fatalf("team-a lost the defaults of the keys it left out: %+v", a)
	}
	if *o.For("team-b") != d || *o.For("nobody") != d {
		t.Fatal("a tenant without overrides must get the defaults")
	}
	diff := Diff(a, &d)
	if len(diff) != 3 || diff["max_series_per_tenant"] != 5 || diff["reject_older_than"] != "3h0m0s" {
		t.Fatalf("diff %v", diff)
	}
}

func TestRuntimeConfigRefusesBadInput(t *testing.T) {
	d := defaults(t)
	for name, doc := range map[string]string{
		"unknown top-level key":   "overides: {}\n",
		"unknown limit":           "overrides:\n  a:\n    max_seris_per_tenant: 1\n",
		"negative":                "overrides:\n  a:\n    max_series_per_tenant: -1\n",
		"negative duration":       "overrides:\n  a:\n    reject_older_than: -1h\n",
		"not a duration":          "overrides:\n  a:\n    reject_older_than: soon\n",
		"default above max nodes": "overrides:\n  a:\n    max_flamegraph_nodes_default: 10\n    max_flamegraph_nodes_max: 5\n",
		"not a map":               "overrides:\n  a: 3\n",
	} {
		if _, err := LoadRuntimeConfig(strings.NewReader(doc), d); err == nil {
			t.Errorf("%s: loaded %q", name, doc)
		} else if name != "unknown top-level key" && !strings.Contains(err.Error(), `tenant "a"`) {
			t.Errorf("%s: error %q does not name the tenant", name, err)
		}
	}
	rc, err := LoadRuntimeConfig(strings.NewReader(""), d)
	if err != nil || len(rc.Overrides) != 0 {
		t.Fatalf("empty file: %v %v", rc, err)
	}
}

func TestExporter(t *testing.T) {
	d := defaults(t)
	rc, err := LoadRuntimeConfig(strings.NewReader("overrides:\n  a:\n    ingestion_rate_mb: 2.5\n    reject_older_than: 2h\n"), d)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewExporter(NewOverrides(d, func() *RuntimeConfig { return rc })))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += "," + lp.GetName() + "=" + lp.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	if len(got) != 2*len(d.Values()) {
		t.Fatalf("%d series, want %d", len(got), 2*len(d.Values()))
	}
	for key, want := range map[string]float64{
		"hearth_limits_overrides,limit_name=ingestion_rate_mb,tenant=a":     2.5,
		"hearth_limits_overrides,limit_name=reject_older_than,tenant=a":     7200,
		"hearth_limits_overrides,limit_name=max_series_per_tenant,tenant=a": float64(d.MaxSeriesPerTenant),
		"hearth_limits_defaults,limit_name=reject_older_than":               3600,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}
