package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hearth-dev/hearth/controllers"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestTLSSwitch turns spec.tls on, then off, on a running Ingester of three pods
// (replication factor 3) under load. Each switch is two rollouts (the switch step,
// where pods accept plain and TLS and call each peer the way it serves, then the
// target): both end Complete with every pod serving the target way, the ring whole
// on every pod, no push failed and every acknowledged profile stored.
func TestTLSSwitch(t *testing.T) {
	e := newScenarioEnv(t)
	const ns, name, secret = "tlsswitch", "hearth", "hearth-internal-tls"
	ctx := context.Background()
	e.apply(t, ns, name, 3, 3)
	serverName := name + "-headless." + ns + ".svc"
	ca := testutil.NewCA(t, "hearth-e2e-ca")
	leaf := ca.Issue(t, "hearth", []string{serverName})
	if _, err := e.p.Clientset.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": ca.PEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := podNames(name, 3)

	// serving says "" when every pod serves the target way (the Secret mounted or not)
	// and none is at the switch step.
	serving := func(tls bool) string {
		for _, pn := range pods {
			pod, err := e.p.Clientset.CoreV1().Pods(ns).Get(ctx, pn, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			s := controllers.PodServingOf(pod, serverName)
			switch {
			case s.Switching:
				return pn + " is at the switch step"
			case tls && s.Secret != secret:
				return pn + " does not serve TLS yet"
			case !tls && s.Secret != "":
				return pn + " still serves TLS"
			}
		}
		return ""
	}
	// switchTo patches spec.tls and waits for both rollouts, sampling the pods to see
	// the switch step happen.
	switchTo := func(tls bool, what string) time.Duration {
		var sawStep bool
		stop := poll(200*time.Millisecond, func() {
			for _, pn := range pods {
				if pod, err := e.p.Clientset.CoreV1().Pods(ns).Get(ctx, pn, metav1.GetOptions{}); err == nil && pod.Annotations[controllers.AnnotationTLSSwitch] != "" {
					sawStep = true
				}
			}
		})
		defer stop()
		start := time.Now()
		if tls {
			e.patchSpec(t, ns, name, map[string]any{"tls": map[string]any{"secretName": secret}})
		} else {
			e.patchSpec(t, ns, name, map[string]any{"tls": nil})
		}
		eventually(t, 6*time.Minute, what+": Complete with every pod serving the target way", func() string {
			if msg := serving(tls); msg != "" {
				return msg
			}
			if msg := e.settled(ns, name, 3); msg != "" {
				return msg
			}
			if c := e.condition(ns, name, "Progressing"); !strings.HasPrefix(c, "False Complete") {
				return "Progressing " + c
			}
			return ""
		})
		took := time.Since(start)
		stop()
		if !sawStep {
			t.Errorf("%s: no pod was seen at the switch step", what)
		}
		return took
	}

	b := e.startLoad(t, ns)
	time.Sleep(2 * time.Second)
	on := switchTo(true, "turning TLS on")
	pushedOn := b.pushes.Load()
	off := switchTo(false, "turning TLS off")
	time.Sleep(time.Second)
	b.end(t, "TLS switched on and off")
	t.Logf("TLS on: both rollouts took %s (%d pushes by then); off: %s", on.Round(time.Millisecond), pushedOn, off.Round(time.Millisecond))
	if n := b.errors.Load(); n > 0 {
		t.Errorf("%d pushes failed during the switches: %v %v", n, b.codes, b.first)
	}
	e.checkAll(t, "TLS switched on and off", fmt.Sprintf("http://%s:4040", podIP(t, e.p, ns, name+"-0")), b)
}
