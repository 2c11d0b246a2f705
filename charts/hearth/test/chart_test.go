// Package test lints and renders the hearth Helm chart with Helm's own library (the
// code `helm lint` and `helm template` run), and checks the chart against the
// generated manifests it must stay in sync with. It is its own module so that Helm's
// dependency graph stays out of the project's go.mod.
package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = ".."
	repoRoot = "../../.."
)

type object struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   map[string]any    `json:"metadata"`
	Spec       map[string]any    `json:"spec"`
	Data       map[string]string `json:"data"`
	Rules      []rule            `json:"rules"`
	RoleRef    map[string]any    `json:"roleRef"`
}

type rule struct {
	APIGroups     []string `json:"apiGroups"`
	Resources     []string `json:"resources"`
	Verbs         []string `json:"verbs"`
	ResourceNames []string `json:"resourceNames"`
}

func TestLint(t *testing.T) {
	for _, values := range []map[string]any{
		nil,
		{"rbac": map[string]any{"secretNamespaces": []any{"profiling"}, "secretNames": []any{"hearth-s3"}}, "metrics": map[string]any{"enabled": false}},
		{"monitoring": monitoringOn},
		{"watchNamespace": "team-a", "rbac": map[string]any{"readStorageClasses": false}},
	} {
		l := lint.AllWithKubeVersion(chartDir, values, "hearth-system", &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"})
		for _, m := range l.Messages {
			// Strict, as `helm lint --strict`: warnings fail too; INFO (e.g. no icon) does not.
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint (values %v): %s", values, m)
			}
		}
	}
}

// render runs the chart's templates as `helm template` does.
func render(t *testing.T, values map[string]any) (map[string][]object, string) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range chrt.Raw {
		if strings.HasPrefix(f.Name, "test/") {
			t.Fatalf("the chart package includes %s: .helmignore must exclude test/", f.Name)
		}
	}
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{Name: "hearth", Namespace: "hearth-system", IsInstall: true},
		&chartutil.Capabilities{KubeVersion: chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}, APIVersions: chartutil.DefaultVersionSet})
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(chrt, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	objs := map[string][]object{}
	var notes string
	for name, content := range out {
		if strings.HasSuffix(name, "NOTES.txt") {
			notes = content
			continue
		}
		for _, doc := range strings.Split(content, "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var o object
			if err := yaml.UnmarshalStrict([]byte(doc), &map[string]any{}); err != nil {
				t.Fatalf("%s: invalid YAML: %v\n%s", name, err, doc)
			}
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata["name"] == nil {
				t.Fatalf("%s: object without apiVersion, kind or name:\n%s", name, doc)
			}
			objs[o.Kind] = append(objs[o.Kind], o)
		}
	}
	return objs, notes
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// grants flattens rules into "group/resource:verb" (with resource names when set).
func grants(rules []rule, skip func(resource string) bool) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if skip != nil && skip(res) {
					continue
				}
				for _, v := range r.Verbs {
					s := g + "/" + res + ":" + v
					if len(r.ResourceNames) > 0 {
						s += fmt.Sprint(r.ResourceNames)
					}
					out = append(out, s)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestRenderDefaults(t *testing.T) {
	objs, notes := render(t, nil)

	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"} {
		if len(objs[kind]) == 0 {
			t.Errorf("no %s rendered", kind)
		}
	}

	// Least privilege: exactly the generated role's grants, no wildcards, no cluster-admin.
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated object
	if err := yaml.Unmarshal(b, &generated); err != nil {
		t.Fatal(err)
	}
	want, got := grants(generated.Rules, nil), grants(objs["ClusterRole"][0].Rules, nil)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("chart ClusterRole differs from config/rbac/role.yaml (generated from the controller's markers):\nchart:     %v\ngenerated: %v", got, want)
	}
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, o := range objs[kind] {
			for _, g := range grants(o.Rules, nil) {
				if strings.Contains(g, "*") {
					t.Errorf("%s %v grants a wildcard: %s", kind, o.Metadata["name"], g)
				}
				if strings.HasPrefix(g, "/secrets:") && !strings.HasSuffix(g, ":get") {
					t.Errorf("%s %v grants more than get on Secrets: %s", kind, o.Metadata["name"], g)
				}
			}
		}
	}
	for _, o := range objs["ClusterRoleBinding"] {
		if o.RoleRef["name"] == "cluster-admin" {
			t.Error("bound to cluster-admin")
		}
	}

	d := objs["Deployment"][0]
	podSpec := d.Spec["template"].(map[string]any)["spec"].(map[string]any)
	c := podSpec["containers"].([]any)[0].(map[string]any)
	args := fmt.Sprint(c["args"])
	for _, a := range []string{"operator", "-leader-elect=true", "-metrics-bind-address=:8080", "-health-probe-bind-address=:8081", "-leader-election-namespace=hearth-system",
		"-leader-elect-lease-duration=15s", "-max-concurrent-reconciles=4"} {
		if !strings.Contains(args, a) {
			t.Errorf("operator args %s lack %s", args, a)
		}
	}
	// Two replicas and leader election by default: a standby takes over when the leader dies.
	if r := fmt.Sprint(d.Spec["replicas"]); r != "2" {
		t.Errorf("operator replicas %s, want 2 (with leader election)", r)
	}
	if c["image"] != "hearth:dev" {
		t.Errorf("image %v", c["image"])
	}
	if sc := podSpec["securityContext"].(map[string]any); sc["runAsNonRoot"] != true {
		t.Errorf("pod security context %v", sc)
	}

	// The Argo CD health check is in the notes.
	if !strings.Contains(notes, "local hs = {}") || !strings.Contains(notes, "resource.customizations.health.hearth.dev_Ingester") {
		t.Errorf("NOTES lack the Argo CD health check:\n%s", notes)
	}
}

func TestRenderNamespacedSecrets(t *testing.T) {
	objs, _ := render(t, map[string]any{
		"rbac":           map[string]any{"secretNamespaces": []any{"profiling", "staging"}, "secretNames": []any{"hearth-s3"}},
		"watchNamespace": "profiling",
		"metrics":        map[string]any{"enabled": false},
	})
	for _, g := range grants(objs["ClusterRole"][0].Rules, nil) {
		if strings.Contains(g, "secrets") {
			t.Errorf("ClusterRole still grants %s with rbac.secretNamespaces set", g)
		}
	}
	secretRoles := map[string]string{}
	for _, r := range objs["Role"] {
		for _, g := range grants(r.Rules, nil) {
			if strings.Contains(g, "secrets") {
				secretRoles[fmt.Sprint(r.Metadata["namespace"])] = g
			}
		}
	}
	if len(secretRoles) != 2 || secretRoles["profiling"] != "/secrets:get[hearth-s3]" || secretRoles["staging"] != "/secrets:get[hearth-s3]" {
		t.Errorf("secret Roles %v, want get on hearth-s3 in profiling and staging", secretRoles)
	}
	if len(objs["Service"]) != 0 {
		t.Error("metrics Service rendered with metrics disabled")
	}
	args := fmt.Sprint(objs["Deployment"][0].Spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"])
	if !strings.Contains(args, "-watch-namespace=profiling") || !strings.Contains(args, "-metrics-bind-address=0") {
		t.Errorf("args %s", args)
	}
}

// The chart ships copies of generated files; `make manifests` refreshes them.
func TestCopiesInSync(t *testing.T) {
	for _, pair := range [][2]string{
		{"config/crd/bases/hearth.dev_ingesters.yaml", "charts/hearth/crds/hearth.dev_ingesters.yaml"},
		{"docs/argocd-health.lua", "charts/hearth/files/argocd-health.lua"},
		{"docs/monitoring/alerts.yaml", "charts/hearth/files/alerts.yaml"},
		{"docs/monitoring/dashboards/hearth-ingesters.json", "charts/hearth/files/dashboards/hearth-ingesters.json"},
		{"docs/monitoring/dashboards/hearth-operator.json", "charts/hearth/files/dashboards/hearth-operator.json"},
	} {
		a, err := os.ReadFile(filepath.Join(repoRoot, pair[0]))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, pair[1]))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run 'make manifests'", pair[1], pair[0])
		}
	}
}

var monitoringOn = map[string]any{
	"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
	"podMonitor":     map[string]any{"enabled": true},
	"prometheusRule": map[string]any{"enabled": true},
	"dashboards":     map[string]any{"enabled": true},
}

// Monitoring is off by default; on, the chart renders the ServiceMonitor, PodMonitor,
// PrometheusRule and dashboards, each equal to what docs/monitoring holds.
func TestRenderMonitoring(t *testing.T) {
	off, _ := render(t, nil)
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} {
		if len(off[kind]) != 0 {
			t.Errorf("%s rendered with monitoring off (the default)", kind)
		}
	}

	on, _ := render(t, map[string]any{"monitoring": monitoringOn})
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"} {
		if len(on[kind]) != 1 {
			t.Fatalf("%d %s rendered with monitoring on", len(on[kind]), kind)
		}
		if on[kind][0].APIVersion != "monitoring.coreos.com/v1" {
			t.Errorf("%s apiVersion %s", kind, on[kind][0].APIVersion)
		}
	}

	// The ServiceMonitor selects the operator's metrics Service and names its port.
	sm := on["ServiceMonitor"][0]
	if sm.Metadata["labels"].(map[string]any)["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v lack monitoring.serviceMonitor.labels", sm.Metadata["labels"])
	}
	svc := on["Service"][0]
	sel := sm.Spec["selector"].(map[string]any)["matchLabels"].(map[string]any)
	for k, v := range sel {
		if svc.Metadata["labels"].(map[string]any)[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v, the metrics Service has %v", k, v, svc.Metadata["labels"])
		}
	}
	ep := sm.Spec["endpoints"].([]any)[0].(map[string]any)
	ports := fmt.Sprint(svc.Spec["ports"])
	if !strings.Contains(ports, "name:"+fmt.Sprint(ep["port"])) || ep["honorLabels"] != true {
		t.Errorf("ServiceMonitor endpoint %v, Service ports %s", ep, ports)
	}
	// Without the metrics Service there is nothing to monitor.
	noMetrics, _ := render(t, map[string]any{"monitoring": monitoringOn, "metrics": map[string]any{"enabled": false}})
	if len(noMetrics["ServiceMonitor"]) != 0 {
		t.Error("ServiceMonitor rendered with metrics.enabled false")
	}

	// The PodMonitor selects the ingester pods the operator renders, on their http port.
	pm := on["PodMonitor"][0]
	if got := fmt.Sprint(pm.Spec["selector"]); got != "map[matchLabels:map[app.kubernetes.io/component:ingester app.kubernetes.io/name:hearth]]" {
		t.Errorf("PodMonitor selector %s", got)
	}
	if got := fmt.Sprint(pm.Spec["podMetricsEndpoints"]); !strings.Contains(got, "port:http") || !strings.Contains(got, "path:/metrics") {
		t.Errorf("PodMonitor endpoints %s", got)
	}

	// The PrometheusRule carries exactly the groups of docs/monitoring/alerts.yaml.
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if want, got := fmt.Sprint(file["groups"]), fmt.Sprint(on["PrometheusRule"][0].Spec["groups"]); want != got || len(want) < 100 {
		t.Errorf("PrometheusRule groups differ from docs/monitoring/alerts.yaml:\n%s\n%s", got, want)
	}

	// One ConfigMap per dashboard, for Grafana's sidecar, holding the file as it is.
	dash, err := filepath.Glob(filepath.Join(repoRoot, "docs", "monitoring", "dashboards", "*.json"))
	if err != nil || len(dash) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	if len(on["ConfigMap"]) != len(dash) {
		t.Fatalf("%d dashboard ConfigMaps, %d dashboards", len(on["ConfigMap"]), len(dash))
	}
	for _, d := range dash {
		want, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, cm := range on["ConfigMap"] {
			if got, ok := cm.Data[filepath.Base(d)]; ok {
				found = true
				if got != strings.TrimRight(string(want), "\n") {
					t.Errorf("ConfigMap %v: %s differs from docs/monitoring/dashboards", cm.Metadata["name"], filepath.Base(d))
				}
				if cm.Metadata["labels"].(map[string]any)["grafana_dashboard"] != "1" {
					t.Errorf("ConfigMap %v lacks the grafana_dashboard label", cm.Metadata["name"])
				}
			}
		}
		if !found {
			t.Errorf("no ConfigMap holds %s", filepath.Base(d))
		}
	}
}

// A namespace-scoped install (watchNamespace): every namespaced rule of the generated role
// is a Role in the watched namespace, bound to the operator's ServiceAccount; the only
// cluster-wide grant is get on StorageClasses, and none at all without
// rbac.readStorageClasses.
func TestRenderNamespaceScoped(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated object
	if err := yaml.Unmarshal(b, &generated); err != nil {
		t.Fatal(err)
	}
	clusterScoped := func(res string) bool { return res == "storageclasses" }
	namespaced := func(res string) bool { return !clusterScoped(res) }

	objs, _ := render(t, map[string]any{"watchNamespace": "team-a"})
	var role *object
	for i, r := range objs["Role"] {
		if r.Metadata["name"] == "hearth-operator" {
			role = &objs["Role"][i]
		}
	}
	if role == nil || role.Metadata["namespace"] != "team-a" {
		t.Fatalf("no Role hearth-operator in team-a: %v", objs["Role"])
	}
	if want, got := grants(generated.Rules, clusterScoped), grants(role.Rules, nil); strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("the Role differs from config/rbac/role.yaml's namespaced rules:\nRole:      %v\ngenerated: %v", got, want)
	}
	bound := false
	for _, rb := range objs["RoleBinding"] {
		if rb.Metadata["name"] == "hearth-operator" {
			bound = rb.Metadata["namespace"] == "team-a" && rb.RoleRef["kind"] == "Role" && rb.RoleRef["name"] == "hearth-operator"
		}
	}
	if !bound {
		t.Errorf("no RoleBinding of the Role in team-a: %v", objs["RoleBinding"])
	}
	if len(objs["ClusterRole"]) != 1 {
		t.Fatalf("%d ClusterRoles, want 1", len(objs["ClusterRole"]))
	}
	if want, got := grants(generated.Rules, namespaced), grants(objs["ClusterRole"][0].Rules, nil); strings.Join(want, "\n") != strings.Join(got, "\n") || len(got) != 1 {
		t.Errorf("the ClusterRole grants %v, want only %v", got, want)
	}
	if args := fmt.Sprint(objs["Deployment"][0].Spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"]); !strings.Contains(args, "-watch-namespace=team-a") {
		t.Errorf("args %s lack -watch-namespace=team-a", args)
	}

	none, _ := render(t, map[string]any{"watchNamespace": "team-a", "rbac": map[string]any{"readStorageClasses": false}})
	if len(none["ClusterRole"])+len(none["ClusterRoleBinding"]) != 0 {
		t.Errorf("rbac.readStorageClasses false still renders %v %v", none["ClusterRole"], none["ClusterRoleBinding"])
	}
	// Cluster-wide, it only drops the StorageClass rule.
	all, _ := render(t, map[string]any{"rbac": map[string]any{"readStorageClasses": false}})
	if want, got := grants(generated.Rules, clusterScoped), grants(all["ClusterRole"][0].Rules, nil); strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("cluster-wide without StorageClasses: %v, want %v", got, want)
	}
}
