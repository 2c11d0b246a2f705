// Package gitops syncs the operator's Helm chart (charts/hearth) and the samples
// (config/samples) into a real kube-apiserver the way Argo CD does, with the operator
// reconciling, and checks what an Argo CD user would see: no drift (computed by
// gitops-engine's server-side diff, the code Argo CD runs), the Ingester's health from
// docs/argocd-health.lua run as Argo CD runs Lua health checks, and no object of the
// operator's that Argo CD would take for part of an Application (and prune).
//
// It is its own module so that gitops-engine's dependencies (kubectl, k8s.io/kubernetes)
// stay out of the project's go.mod. gitops-engine's sync and health packages do not build
// against Kubernetes 1.37 client libraries (they use the removed autoscaling/v2beta1
// and v2beta2 APIs), so the sync is Argo CD's server-side apply reproduced here (its field
// manager, forced conflicts, its tracking annotation and label, its kind order) and the
// Lua health runs on gopher-lua with the libraries Argo CD opens.
package gitops

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/argoproj/gitops-engine/pkg/diff"
	lua "github.com/yuin/gopher-lua"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

const (
	// argoManager is the field manager of Argo CD's server-side apply and diff.
	argoManager = "argocd-controller"
	// Argo CD's resource tracking: the annotation (the default since Argo CD 3) and the
	// label (label tracking, and "annotation+label").
	trackingAnnotation = "argocd.argoproj.io/tracking-id"
	trackingLabel      = "app.kubernetes.io/instance"
)

// app is an Argo CD Application: a name, a destination namespace and its manifests.
type app struct {
	name, namespace string
	objs            []*unstructured.Unstructured
}

// renderChart renders charts/hearth with its default values, CRDs included (Argo CD
// applies a chart's crds/ directory), as `helm template` would for release "hearth".
func renderChart(namespace string) ([]*unstructured.Unstructured, error) {
	return renderChartWith("hearth", namespace, nil)
}

// renderChartWith is renderChart for a release name and values.
func renderChartWith(release, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	chrt, err := loader.Load(filepath.Join(repoRoot, "charts", "hearth"))
	if err != nil {
		return nil, err
	}
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true},
		&chartutil.Capabilities{KubeVersion: chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}, APIVersions: chartutil.DefaultVersionSet})
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(chrt, vals)
	if err != nil {
		return nil, err
	}
	var docs []string
	for _, crd := range chrt.CRDObjects() {
		docs = append(docs, string(crd.File.Data))
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, ".txt") {
			continue
		}
		docs = append(docs, out[name])
	}
	return parse(docs, namespace)
}

// readSamples reads the files config/samples/kustomization.yaml lists (what `kustomize
// build` yields for it: no transformers are set).
func readSamples(namespace string) ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(repoRoot, "config", "samples")
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	var docs []string
	for _, r := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			return nil, err
		}
		docs = append(docs, string(b))
	}
	return parse(docs, namespace)
}

// parse splits YAML streams into objects; namespaced objects without a namespace get the
// Application's destination namespace (Argo CD's rule). Cluster-scoped kinds are the
// few the chart has.
func parse(docs []string, namespace string) ([]*unstructured.Unstructured, error) {
	clusterScoped := map[string]bool{"CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true, "Namespace": true, "StorageClass": true}
	var out []*unstructured.Unstructured
	for _, stream := range docs {
		for _, doc := range strings.Split(stream, "\n---") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				return nil, fmt.Errorf("%w in:\n%s", err, doc)
			}
			if len(m) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			if !clusterScoped[u.GetKind()] && u.GetNamespace() == "" {
				u.SetNamespace(namespace)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// trackingID is Argo CD's annotation value: <app>:<group>/<kind>:<namespace>/<name>.
func trackingID(appName string, u *unstructured.Unstructured) string {
	return fmt.Sprintf("%s:%s/%s:%s/%s", appName, u.GroupVersionKind().Group, u.GetKind(), u.GetNamespace(), u.GetName())
}

// tracked is the object as Argo CD applies it: with the tracking annotation and label
// ("annotation+label" tracking covers both of Argo CD's methods at once).
func tracked(appName string, u *unstructured.Unstructured) *unstructured.Unstructured {
	u = u.DeepCopy()
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[trackingAnnotation] = trackingID(appName, u)
	u.SetAnnotations(a)
	l := u.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[trackingLabel] = appName
	u.SetLabels(l)
	return u
}

// kindOrder is Argo CD's (gitops-engine's) sync order within a wave: kinds others depend
// on first; kinds it does not know (custom resources) last.
var kindOrder = []string{"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
	"ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
	"Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
	"StatefulSet", "Job", "CronJob", "Ingress", "APIService"}

func kindRank(kind string) int {
	for i, k := range kindOrder {
		if k == kind {
			return i
		}
	}
	return len(kindOrder)
}

// resourceFor maps an object to its API resource.
func (p *platform) resourceFor(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := p.c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return p.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return p.dyn.Resource(m.Resource), nil
}

// apply is Argo CD's server-side apply: its field manager, conflicts forced.
func (p *platform) apply(ctx context.Context, u *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	ri, err := p.resourceFor(u)
	if err != nil {
		return nil, err
	}
	opts := metav1.ApplyOptions{FieldManager: argoManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Apply(ctx, u.GetName(), u, opts)
}

// sync applies an Application's manifests as Argo CD's sync does with ServerSideApply=true
// and CreateNamespace=true: namespace first, then in kind order; custom resources once
// their CRD is established.
func (p *platform) sync(ctx context.Context, a app) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(a.namespace)
	if _, err := p.apply(ctx, ns, false); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	objs := append([]*unstructured.Unstructured{}, a.objs...)
	sort.SliceStable(objs, func(i, j int) bool { return kindRank(objs[i].GetKind()) < kindRank(objs[j].GetKind()) })
	for _, o := range objs {
		if _, err := p.apply(ctx, tracked(a.name, o), false); err != nil {
			return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if o.GetKind() == "CustomResourceDefinition" {
			if err := p.waitEstablished(ctx, o.GetName()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *platform) waitEstablished(ctx context.Context, name string) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for i := 0; i < 1200; i++ { // 2 minutes: a deadline for a hung system
		crd, err := p.dyn.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRD %s not established", name)
}

// ssdRunner is gitops-engine's ServerSideDryRunner over the dynamic client: the predicted
// live object of Argo CD's server-side diff (a dry-run apply by Argo CD's manager).
type ssdRunner struct{ p *platform }

func (r ssdRunner) Run(ctx context.Context, obj *unstructured.Unstructured, manager string) (string, error) {
	u, err := r.p.apply(ctx, obj, true)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(u)
	return string(b), err
}

// drift diffs every object of the Application against the live one with gitops-engine's
// server-side diff (Argo CD's ServerSideDiff=true), returning what differs. Mutation
// webhooks are not ignored (there are none here): every difference counts.
func (p *platform) drift(ctx context.Context, a app) ([]string, error) {
	var out []string
	for _, o := range a.objs {
		want := tracked(a.name, o)
		ri, err := p.resourceFor(want)
		if err != nil {
			return nil, err
		}
		live, err := ri.Get(ctx, want.GetName(), metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		res, err := diff.Diff(want, live, diff.WithServerSideDiff(true), diff.WithServerSideDryRunner(ssdRunner{p}),
			diff.WithManager(argoManager), diff.WithIgnoreMutationWebhook(false))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if res.Modified {
			out = append(out, fmt.Sprintf("%s %s/%s:\n  predicted %s\n  live      %s", o.GetKind(), o.GetNamespace(), o.GetName(), res.PredictedLive, res.NormalizedLive))
		}
	}
	return out, nil
}

// argoOwned lists the live objects of a namespace that Argo CD would count as part of the
// Application appName (its tracking annotation or label names the app, and the object has
// no owner: Argo CD never takes owned objects for top-level resources) but that are not
// in its manifests: Argo CD shows them "requires pruning" and deletes them on a prune.
func (p *platform) argoOwned(ctx context.Context, a app) ([]string, error) {
	desired := map[string]bool{}
	for _, o := range a.objs {
		desired[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
	}
	lists, err := discoveryNamespaced(p)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, gvr := range lists {
		l, err := p.dyn.Resource(gvr).Namespace(a.namespace).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", gvr, err)
		}
		for _, u := range l.Items {
			key := u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
			if desired[key] || len(u.GetOwnerReferences()) > 0 {
				continue
			}
			id := u.GetAnnotations()[trackingAnnotation]
			if u.GetLabels()[trackingLabel] == a.name || strings.HasPrefix(id, a.name+":") {
				out = append(out, fmt.Sprintf("%s (labels %v, tracking-id %q)", key, u.GetLabels(), id))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func discoveryNamespaced(p *platform) ([]schema.GroupVersionResource, error) {
	lists, err := p.disc.ServerPreferredNamespacedResources()
	if err != nil {
		return nil, err
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, err
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !contains(r.Verbs, "list") || r.Kind == "Event" {
				continue
			}
			out = append(out, gv.WithResource(r.Name))
		}
	}
	return out, nil
}

func contains(s []string, x string) bool {
	for _, e := range s {
		if e == x {
			return true
		}
	}
	return false
}

// health is an Argo CD health status.
type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// luaHealth runs a resource.customizations.health Lua script the way Argo CD does
// (util/lua): a fresh state with only the base, table and package libraries (no string,
// math or io unless useOpenLibs is set, which docs/argocd.md does not ask for), a
// 1-second budget, the object as the global obj, and the returned table read through
// JSON into {status, message}; a status outside Argo CD's codes is Unknown.
func luaHealth(script string, obj map[string]any) (health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return health{}, err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("the script returned %s, want a table", L.Get(-1).Type())
	}
	h := health{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}
	switch h.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		h = health{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return h, nil
}

// toLua converts an unstructured object (JSON numbers as int64 or float64) as Argo CD's
// decodeValue does.
func toLua(L *lua.LState, v any) lua.LValue {
	switch t := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(t)
	case int64:
		return lua.LNumber(t)
	case float64:
		return lua.LNumber(t)
	case string:
		return lua.LString(t)
	case []any:
		tb := L.NewTable()
		for _, e := range t {
			tb.Append(toLua(L, e))
		}
		return tb
	case map[string]any:
		tb := L.NewTable()
		for k, e := range t {
			tb.RawSetString(k, toLua(L, e))
		}
		return tb
	}
	return lua.LString(fmt.Sprint(v))
}

// ingesterHealth reads an Ingester and runs the health script on it.
func (p *platform) ingesterHealth(ctx context.Context, script, ns, name string) (health, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("hearth.dev/v1alpha1")
	u.SetKind("Ingester")
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, u); err != nil {
		return health{}, err
	}
	return luaHealth(script, u.Object)
}
