package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// TestDecideTLSStep: the switch step is rendered exactly while some pod serves the
// opposite way of the spec without being at the switch step, with the Secret the pods
// that present one use when turning TLS off.
func TestDecideTLSStep(t *testing.T) {
	plain := PodServing{}
	tlsA := PodServing{Secret: "a", ServerName: "n"}
	stepA := PodServing{Secret: "a", ServerName: "n", Switching: true}
	for _, c := range []struct {
		name    string
		wantTLS bool
		pods    []PodServing
		want    TLSStep
	}{
		{"fresh, TLS", true, nil, TLSStep{}},
		{"fresh, plain", false, nil, TLSStep{}},
		{"all plain, plain wanted", false, []PodServing{plain, plain}, TLSStep{}},
		{"all TLS, TLS wanted", true, []PodServing{tlsA, tlsA}, TLSStep{}},
		{"turning on: plain pods", true, []PodServing{plain, plain, plain}, TLSStep{true, "a", "n"}},
		{"turning on: halfway through the step", true, []PodServing{stepA, plain, plain}, TLSStep{true, "a", "n"}},
		{"turning on: every pod at the step", true, []PodServing{stepA, stepA, stepA}, TLSStep{}},
		{"turning on: second rollout under way", true, []PodServing{tlsA, stepA, stepA}, TLSStep{}},
		{"turning off: TLS pods", false, []PodServing{tlsA, tlsA}, TLSStep{true, "a", "n"}},
		{"turning off: halfway", false, []PodServing{stepA, tlsA}, TLSStep{true, "a", "n"}},
		{"turning off: every pod at the step", false, []PodServing{stepA, stepA}, TLSStep{}},
		{"turning off: second rollout under way", false, []PodServing{plain, stepA}, TLSStep{}},
		{"another Secret is no switch", true, []PodServing{{Secret: "old", ServerName: "n"}}, TLSStep{}},
	} {
		secret := ""
		if c.wantTLS {
			secret = "a"
		}
		if got := DecideTLSStep(c.wantTLS, secret, "n", c.pods); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestSwitchStepRendering: the switch step's config accepts plain on the internal port,
// falls back to plain for plain peers and gossips plain while serving TLS; the target
// does none of that (memberlist accepts plain gossip with TLS always); the step's pods
// are marked, and a user's annotation is never taken for the step.
func TestSwitchStepRendering(t *testing.T) {
	ing := &hearthv1.Ingester{ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "ns"}}
	ing.Spec.Replicas = ptr.To[int32](3)
	ing.Spec.ObjectStorage.Backend = "filesystem"
	config := func(i *hearthv1.Ingester) map[string]any {
		t.Helper()
		b, err := IngesterConfig(i, "")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	get := func(m map[string]any, path ...string) any {
		var v any = m
		for _, p := range path {
			mm, _ := v.(map[string]any)
			v = mm[p]
		}
		return v
	}
	step := withTLSStep(ing, TLSStep{Switching: true, Secret: "s", ServerName: "name"})
	if step == ing || ing.Spec.TLS != nil {
		t.Fatal("withTLSStep changed the Ingester it was given")
	}
	m := config(step)
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"server", "internal_tls", "accept_plain"}, true},
		{[]string{"server", "internal_tls", "client_auth"}, ClientAuthRequireAndVerify},
		{[]string{"ingester", "client", "tls_plain_fallback"}, true},
		{[]string{"ingester", "client", "tls_server_name"}, "name"},
		{[]string{"memberlist", "tls_enabled"}, true},
		{[]string{"memberlist", "tls_accept_plain"}, true},
		{[]string{"memberlist", "tls_dial_plain"}, true},
	} {
		if got := get(m, c.path...); got != c.want {
			t.Errorf("switch step: %v = %v, want %v", c.path, got, c.want)
		}
	}
	sts := RenderStatefulSet(step, Zones(step)[0], &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}})
	if sts.Spec.Template.Annotations[AnnotationTLSSwitch] != tlsSwitchValue {
		t.Errorf("switch step's pod template annotations: %v", sts.Spec.Template.Annotations)
	}

	target := ing.DeepCopy()
	target.Spec.TLS = &hearthv1.TLSSpec{SecretName: "s"}
	target.Annotations = map[string]string{AnnotationTLSSwitch: tlsSwitchValue} // a user's
	target = withTLSStep(target, TLSStep{})
	m = config(target)
	for _, p := range [][]string{{"server", "internal_tls", "accept_plain"}, {"ingester", "client", "tls_plain_fallback"}, {"memberlist", "tls_dial_plain"}} {
		if got := get(m, p...); got != nil {
			t.Errorf("target: %v = %v, want unset", p, got)
		}
	}
	if got := get(m, "memberlist", "tls_accept_plain"); got != true {
		t.Errorf("target: memberlist tls_accept_plain = %v, want true", got)
	}
	sts = RenderStatefulSet(target, Zones(target)[0], &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}})
	if _, ok := sts.Spec.Template.Annotations[AnnotationTLSSwitch]; ok {
		t.Errorf("target's pod template carries the switch annotation: %v", sts.Spec.Template.Annotations)
	}
}
