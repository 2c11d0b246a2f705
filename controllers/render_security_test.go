package controllers

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// securityFixtures: mutual TLS from a cert-manager Secret with the public port open to
// one namespace, and an Ingester without a NetworkPolicy.
func securityFixtures() map[string]*hearthv1.Ingester {
	f := fixtures()
	tls := f["minimal"].DeepCopy()
	tls.Name = "secure"
	tls.Spec.TLS = &hearthv1.TLSSpec{SecretName: "hearth-internal-tls"}
	tls.Spec.NetworkPolicy.PublicFrom = []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "agents"}},
	}}
	open := f["minimal"].DeepCopy()
	open.Name = "open"
	open.Spec.NetworkPolicy.Enabled = ptr.To(false)
	return map[string]*hearthv1.Ingester{"tls": tls, "no-networkpolicy": open}
}

func TestRenderSecurityGolden(t *testing.T) {
	defer func(ns string) { OperatorNamespace = ns }(OperatorNamespace)
	OperatorNamespace = "hearth-system"
	for name, ing := range securityFixtures() {
		t.Run(name, func(t *testing.T) {
			got, err := RenderYAML(ing)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run 'go test ./controllers -run TestRenderSecurityGolden -update' to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered children differ from %s (rerun with -update if the change is intended):\n%s", path, lineDiff(string(want), string(got)))
			}
		})
	}
}

func TestRenderSecurityRules(t *testing.T) {
	f := securityFixtures()
	defer func(ns string) { OperatorNamespace = ns }(OperatorNamespace)
	OperatorNamespace = ""

	t.Run("the NetworkPolicy is on by default and off on request", func(t *testing.T) {
		kinds := func(ing *hearthv1.Ingester) []string {
			objs, err := Render(ing)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, o := range objs {
				out = append(out, o.GetObjectKind().GroupVersionKind().Kind)
			}
			return out
		}
		if !slices.Contains(kinds(fixtures()["minimal"]), "NetworkPolicy") {
			t.Fatal("no NetworkPolicy by default")
		}
		if slices.Contains(kinds(f["no-networkpolicy"]), "NetworkPolicy") {
			t.Fatal("a NetworkPolicy with spec.networkPolicy.enabled=false")
		}
	})

	t.Run("internal and memberlist ports admit only the Ingester's pods (and the operator the internal one)", func(t *testing.T) {
		np := RenderNetworkPolicy(fixtures()["minimal"])
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Fatalf("policy types %v: egress must stay open", np.Spec.PolicyTypes)
		}
		byPort := map[string][]networkingv1.NetworkPolicyPeer{}
		for _, r := range np.Spec.Ingress {
			if len(r.Ports) != 1 {
				t.Fatalf("rule with %d ports", len(r.Ports))
			}
			byPort[r.Ports[0].Port.String()] = r.From
		}
		if from, ok := byPort["http"]; !ok || len(from) != 0 {
			t.Fatalf("public port: %v (want open to all)", from)
		}
		self := SelectorLabels(fixtures()["minimal"])
		if from := byPort["memberlist"]; len(from) != 1 || !equalMap(from[0].PodSelector.MatchLabels, self) || from[0].NamespaceSelector != nil {
			t.Fatalf("memberlist admits %+v", from)
		}
		from := byPort["internal"]
		if len(from) != 2 || !equalMap(from[0].PodSelector.MatchLabels, self) || !equalMap(from[1].PodSelector.MatchLabels, OperatorPodLabels) {
			t.Fatalf("internal admits %+v", from)
		}
		if from[1].NamespaceSelector == nil || len(from[1].NamespaceSelector.MatchLabels) != 0 {
			t.Fatalf("operator namespace unknown: want every namespace, got %+v", from[1].NamespaceSelector)
		}
		OperatorNamespace = "ops"
		np = RenderNetworkPolicy(fixtures()["minimal"])
		if got := np.Spec.Ingress[1].From[1].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; got != "ops" {
			t.Fatalf("operator namespace selector %q, want ops", got)
		}
		OperatorNamespace = ""
		if np := RenderNetworkPolicy(f["tls"]); len(np.Spec.Ingress[0].From) != 1 {
			t.Fatalf("publicFrom not rendered: %+v", np.Spec.Ingress[0])
		}
	})

	t.Run("spec.tls mounts the Secret as a directory and configures all three TLS users", func(t *testing.T) {
		ing := f["tls"]
		cm, err := RenderConfigMap(ing)
		if err != nil {
			t.Fatal(err)
		}
		sts := RenderStatefulSet(ing, Zones(ing)[0], cm)
		pod := sts.Spec.Template.Spec
		var vol *corev1.Volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == TLSVolume {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil || vol.Secret == nil || vol.Secret.SecretName != "hearth-internal-tls" {
			t.Fatalf("TLS volume %+v", vol)
		}
		c := pod.Containers[0]
		var mounted bool
		for _, m := range c.VolumeMounts {
			if m.Name == TLSVolume {
				mounted = m.MountPath == TLSDir && m.ReadOnly && m.SubPath == "" // subPath mounts never see a renewal
			}
		}
		if !mounted {
			t.Fatalf("TLS mount %+v", c.VolumeMounts)
		}
		var ports []string
		for _, p := range c.Ports {
			ports = append(ports, p.Name)
		}
		if !slices.Contains(ports, "internal") {
			t.Fatalf("container ports %v", ports)
		}
		if got := c.Lifecycle.PreStop.Exec.Command; !slices.Equal(got, []string{BinaryPath, "prestop", "-config.file=/etc/hearth/hearth.yaml"}) {
			t.Fatalf("preStop %v", got)
		}
		var cfg struct {
			Server struct {
				InternalListenPort int               `json:"internal_listen_port"`
				InternalTLS        map[string]string `json:"internal_tls"`
			} `json:"server"`
			Ingester struct {
				Client map[string]any `json:"client"`
			} `json:"ingester"`
			Memberlist map[string]any `json:"memberlist"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data[ConfigFile]), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Server.InternalListenPort != InternalPort || cfg.Server.InternalTLS["client_auth"] != "RequireAndVerifyClientCert" ||
			cfg.Server.InternalTLS["client_ca_path"] != "/etc/hearth-tls/ca.crt" {
			t.Fatalf("server config %+v", cfg.Server)
		}
		if cfg.Ingester.Client["tls_enabled"] != true || cfg.Ingester.Client["tls_server_name"] != "secure-headless.profiling.svc" {
			t.Fatalf("ingester client config %+v", cfg.Ingester.Client)
		}
		if cfg.Memberlist["tls_enabled"] != true || cfg.Memberlist["tls_cert_path"] != "/etc/hearth-tls/tls.crt" {
			t.Fatalf("memberlist config %+v", cfg.Memberlist)
		}
		// Without spec.tls: the internal port, no TLS anywhere.
		plain, _ := IngesterConfig(fixtures()["minimal"], "")
		if bytes.Contains(plain, []byte("tls")) || !bytes.Contains(plain, []byte("internal_listen_port: 4041")) {
			t.Fatalf("config without spec.tls:\n%s", plain)
		}
		// The public port stays plain HTTP unless spec.tls.public.
		if bytes.Contains([]byte(cm.Data[ConfigFile]), []byte("http_tls")) || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Fatalf("public port TLS without spec.tls.public: probe %s, config:\n%s", c.ReadinessProbe.HTTPGet.Scheme, cm.Data[ConfigFile])
		}
	})

	t.Run("spec.tls.public serves the public port over TLS: config, probe and PodMonitor follow", func(t *testing.T) {
		ing := f["tls"].DeepCopy()
		ing.Spec.TLS.Public = true
		ing.Spec.Monitoring.Enabled = true
		cm, err := RenderConfigMap(ing)
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Server struct {
				HTTPTLS     map[string]string `json:"http_tls"`
				InternalTLS map[string]string `json:"internal_tls"`
			} `json:"server"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data[ConfigFile]), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Server.HTTPTLS["cert_path"] != "/etc/hearth-tls/tls.crt" || cfg.Server.HTTPTLS["key_path"] != "/etc/hearth-tls/tls.key" ||
			cfg.Server.HTTPTLS["client_auth"] != "" || cfg.Server.InternalTLS["client_auth"] != ClientAuthRequireAndVerify {
			t.Fatalf("server config %+v (the public port asks no client certificate; the internal one still requires it)", cfg.Server)
		}
		sts := RenderStatefulSet(ing, Zones(ing)[0], cm)
		if got := sts.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Scheme; got != corev1.URISchemeHTTPS {
			t.Fatalf("readiness probe scheme %s", got)
		}
		pm := RenderPodMonitor(ing)
		eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		ep := eps[0].(map[string]any)
		ca, _, _ := unstructured.NestedString(ep, "tlsConfig", "ca", "secret", "name")
		sn, _, _ := unstructured.NestedString(ep, "tlsConfig", "serverName")
		if ep["scheme"] != "https" || ca != "hearth-internal-tls" || sn != "secure-headless.profiling.svc" {
			t.Fatalf("PodMonitor endpoint %+v", ep)
		}
	})
}

func equalMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
