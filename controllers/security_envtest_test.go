package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// spec.tls against a real API server: the CRD accepts it, a missing Secret is Degraded
// (SecretNotFound), the Secret's arrival clears it and the pods mount it; turning the
// NetworkPolicy off deletes it.
func TestTLSAndNetworkPolicy(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	ing := newIngester(ns, "sec")
	ing.Spec.TLS = &hearthv1.TLSSpec{SecretName: "sec-tls"}
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	p.wantCondition(t, ns, "sec", hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonSecretNotFound)

	ca := testutil.NewCA(t, "ca")
	leaf := ca.Issue(t, "sec", []string{TLSServerName(ing)})
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sec-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM}}
	if err := p.c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	st := p.wantCondition(t, ns, "sec", hearthv1.ConditionDegraded, metav1.ConditionTrue, ReasonSecretKey)
	if c := condition(st, hearthv1.ConditionDegraded); c == nil || !strings.Contains(c.Message, "ca.crt") {
		t.Fatalf("Degraded does not name the missing key: %+v", c)
	}
	sec.Data["ca.crt"] = ca.PEM
	if err := p.c.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	p.wantCondition(t, ns, "sec", hearthv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected)
	eventually(t, "children match the render", func() error { return p.liveMatchesRender(ns, "sec") })
	sts := &appsv1.StatefulSet{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "sec"}, sts); err != nil {
		t.Fatal(err)
	}
	var mounted bool
	for _, v := range sts.Spec.Template.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == "sec-tls")
	}
	if !mounted {
		t.Fatalf("the StatefulSet does not mount the TLS Secret: %+v", sts.Spec.Template.Spec.Volumes)
	}
	np := &networkingv1.NetworkPolicy{}
	if err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "sec"}, np); err != nil {
		t.Fatalf("NetworkPolicy: %v", err)
	}
	// Deleted by someone else: put back (the operator watches its NetworkPolicies).
	if err := p.c.Delete(ctx, np); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NetworkPolicy recreated", func() error {
		return p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "sec"}, &networkingv1.NetworkPolicy{})
	})
	// Turned off: deleted.
	p.mutate(t, ns, "sec", func(i *hearthv1.Ingester) { i.Spec.NetworkPolicy.Enabled = ptr.To(false) })
	eventually(t, "NetworkPolicy deleted", func() error {
		err := p.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "sec"}, &networkingv1.NetworkPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
}

// The generated ClusterRole (config/rbac/role.yaml) is enough for what the operator does
// with NetworkPolicies and the TLS Secret, and no more: as a user bound to it, apply
// (create and change), list, watch, delete a NetworkPolicy and get the Secret work;
// update a NetworkPolicy, list Secrets are refused.
func TestOperatorRBACForSecurity(t *testing.T) {
	p := getPlatform(t)
	ns := p.namespace(t)
	b, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(b, role); err != nil {
		t.Fatal(err)
	}
	role.Name = "hearth-operator-rbac-" + ns
	if err := p.c.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	user := "hearth-operator-" + ns
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}}}
	if err := p.c.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.c.Delete(ctx, binding); _ = p.c.Delete(ctx, role) })
	au, err := p.env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := client.New(au.Config(), client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}

	ing := newIngester(ns, "rbac")
	ing.Spec.NetworkPolicy.Enabled = ptr.To(false) // the test's user does the applying
	if err := p.c.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	ing = p.get(t, ns, "rbac")
	ing.Spec.NetworkPolicy.Enabled = nil
	apply := func() error {
		np := RenderNetworkPolicy(ing)
		// Not controlled by the Ingester: its operator (running in this platform) prunes
		// a NetworkPolicy it controls while spec.networkPolicy.enabled is false, which
		// would race this user's calls.
		np.OwnerReferences = nil
		u, err := ToApply(np)
		if err != nil {
			return err
		}
		return oc.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership)
	}
	eventually(t, "RBAC cache", func() error { return apply() }) // create through apply
	ing.Spec.NetworkPolicy.PublicFrom = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}
	if err := apply(); err != nil { // change through apply
		t.Fatal(err)
	}
	np := &networkingv1.NetworkPolicy{}
	if err := oc.Get(ctx, types.NamespacedName{Namespace: ns, Name: "rbac"}, np); err != nil {
		t.Fatal(err)
	}
	if len(np.Spec.Ingress[0].From) != 1 {
		t.Fatalf("applied change not stored: %+v", np.Spec.Ingress[0])
	}
	if err := oc.List(ctx, &networkingv1.NetworkPolicyList{}, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	w, err := client.NewWithWatch(au.Config(), client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := w.Watch(ctx, &networkingv1.NetworkPolicyList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	watch.Stop()
	np.Spec.Ingress = nil
	if err := oc.Update(ctx, np); !apierrors.IsForbidden(err) {
		t.Fatalf("update of a NetworkPolicy: %v, want forbidden (apply needs no update)", err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tls"}, Data: map[string][]byte{"tls.crt": {1}}}
	if err := p.c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if err := oc.Get(ctx, types.NamespacedName{Namespace: ns, Name: "tls"}, &corev1.Secret{}); err != nil {
		t.Fatalf("get the TLS Secret: %v", err)
	}
	if err := oc.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
		t.Fatalf("list Secrets: %v, want forbidden", err)
	}
	if err := oc.Delete(ctx, np); err != nil {
		t.Fatal(err)
	}
}
