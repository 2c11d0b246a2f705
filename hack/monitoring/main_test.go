package monitoring

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const repo = "../.."

var update = flag.Bool("update", false, "rewrite docs/monitoring/metrics-used.txt")

func dashboards(t *testing.T) []string {
	t.Helper()
	ds, err := filepath.Glob(filepath.Join(repo, "docs/monitoring/dashboards/*.json"))
	if err != nil || len(ds) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	return ds
}

// The rules parse with Prometheus's rule parser; every alert has a severity, a summary
// and a runbook section, and every runbook section an alert.
func TestRules(t *testing.T) {
	u := Uses{}
	groups, err := u.ReadRules(filepath.Join(repo, "docs/monitoring/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := os.ReadFile(filepath.Join(repo, "docs/runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(string(rb), -1) {
		sections[m[1]] = true
	}
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			if !sections[r.Alert] {
				t.Errorf("%s: no section in docs/runbooks.md", r.Alert)
			}
			if want := "docs/runbooks.md#" + strings.ToLower(r.Alert); !strings.HasSuffix(r.Annotations["runbook_url"], want) {
				t.Errorf("%s: runbook_url %q does not end in %s", r.Alert, r.Annotations["runbook_url"], want)
			}
		}
	}
	for s := range sections {
		if !alerts[s] {
			t.Errorf("docs/runbooks.md has a section %s but no alert is called that", s)
		}
	}
	if len(alerts) < 10 {
		t.Errorf("%d alerts", len(alerts))
	}
}

// A rule file Prometheus would refuse is refused here too (the check can fail).
func TestRulesParserRefusesBadExpr(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum by (x (up)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Uses{}).ReadRules(bad); err == nil {
		t.Error("a rule with an unbalanced parenthesis parsed")
	}
}

// Every dashboard query parses with Prometheus's PromQL parser; panel ids are unique;
// every panel has a query.
func TestDashboards(t *testing.T) {
	uids := map[string]bool{}
	for _, path := range dashboards(t) {
		u := Uses{}
		d, err := u.ReadDashboard(path)
		if err != nil {
			t.Fatal(err)
		}
		if d.UID == "" || uids[d.UID] || d.Title == "" {
			t.Errorf("%s: uid %q (unique, required), title %q", path, d.UID, d.Title)
		}
		uids[d.UID] = true
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", path, p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", path, p.Title)
			}
		}
		if len(u) == 0 {
			t.Errorf("%s uses no metric", path)
		}
	}
}

// What the extraction records for an expression: the metric, its matchers' labels and
// the grouping labels around it, not the labels of "without".
func TestParseExpr(t *testing.T) {
	u := Uses{}
	if err := u.ParseExpr(`histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{pod=~"$pod"}[$__rate_interval]))) / on (route) group_left sum without (x) (b{c="1"})`); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(strings.Split(strings.TrimSpace(u.Text()), "\n")[3:], "|")
	if want := "a_bucket le pod route|b c route"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// docs/monitoring/metrics-used.txt is what the rules and dashboards use today
// (`make monitoring` rewrites it; test/monitoring checks it against real /metrics).
func TestMetricsUsedUpToDate(t *testing.T) {
	u := Uses{}
	if _, err := u.ReadRules(filepath.Join(repo, "docs/monitoring/alerts.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, path := range dashboards(t) {
		if _, err := u.ReadDashboard(path); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(repo, "docs/monitoring/metrics-used.txt")
	if *update {
		if err := os.WriteFile(path, []byte(u.Text()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != u.Text() {
		t.Errorf("docs/monitoring/metrics-used.txt is stale: run 'make monitoring' and commit\nwant:\n%s", u.Text())
	}
}
