package gitops

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/controllers"
)

const repoRoot = "../.."

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(hearthv1.AddToScheme(scheme))
}

// platform is a real kube-apiserver and etcd (envtest), a kube-controller-manager with the
// controllers the operator relies on (StatefulSet, garbage collector, disruption), and the
// test playing the kubelet: pods it sees become Running and Ready at a loopback address.
// Nothing is installed up front: the CRD comes with the chart's sync, as with Argo CD.
type platform struct {
	env  *envtest.Environment
	c    client.Client
	dyn  dynamic.Interface
	disc discovery.DiscoveryInterface
	kcm  *exec.Cmd

	mu  sync.Mutex
	ips map[string]types.NamespacedName // pod IP → its Ingester (the fake ring answers for it)
	n   int
}

func assets(t *testing.T) string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	m, _ := filepath.Glob(filepath.Join(repoRoot, "bin", "k8s", "v*"))
	if len(m) == 0 {
		t.Fatal("no Kubernetes test binaries: run 'make k8s-bins' or set KUBEBUILDER_ASSETS")
	}
	d, _ := filepath.Abs(m[len(m)-1])
	return d
}

func startPlatform(t *testing.T) *platform {
	t.Helper()
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	dir := assets(t)
	p := &platform{ips: map[string]types.NamespacedName{}}
	p.env = &envtest.Environment{BinaryAssetsDirectory: dir, Scheme: scheme}
	cfg, err := p.env.Start()
	if err != nil {
		t.Fatalf("envtest: %v", err)
	}
	t.Cleanup(func() { _ = p.env.Stop() })
	if p.c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	if p.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if p.disc, err = discovery.NewDiscoveryClientForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	admin, err := p.env.AddUser(envtest.User{Name: "kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	p.kcm = exec.Command(filepath.Join(dir, "kube-controller-manager"), "--kubeconfig="+kubeconfig,
		"--leader-elect=false", "--secure-port=0", "-v=0",
		"--controllers=garbage-collector-controller,statefulset-controller,persistentvolumeclaim-protection-controller,disruption-controller")
	if err := p.kcm.Start(); err != nil {
		t.Fatalf("kube-controller-manager: %v", err)
	}
	t.Cleanup(func() { _ = p.kcm.Process.Kill(); _ = p.kcm.Wait() })
	return p
}

func zapLevel() zapcore.Level {
	if os.Getenv("HEARTH_TEST_VERBOSE") != "" {
		return -1
	}
	return 2 // errors only
}

// startOperator runs the operator in-process, as `hearth operator` does (minus leader
// election and its servers), once the CRD is there. The ingesters' API is the test's:
// the ring lists every pod of the namespace ACTIVE, prepare-shutdown and flush succeed.
func (p *platform) startOperator(t *testing.T) {
	t.Helper()
	mgr, err := ctrl.NewManager(p.env.Config, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: controllers.CacheByObject()},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &controllers.IngesterReconciler{Ring: ring{p}, Pods: okPods{}, Resync: 2 * time.Second}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// kubelet makes every pod of ns Running and Ready at a fresh loopback address, until the
// test ends (polling, bounded by the test's lifetime).
func (p *platform) kubelet(t *testing.T, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var pods corev1.PodList
			if err := p.c.List(ctx, &pods, client.InNamespace(ns)); err == nil {
				for i := range pods.Items {
					pod := &pods.Items[i]
					if pod.DeletionTimestamp != nil || pod.Status.PodIP != "" {
						continue
					}
					p.mu.Lock()
					p.n++
					ip := net.IPv4(127, 10, byte(p.n/256), byte(p.n%256)).String()
					p.ips[ip] = types.NamespacedName{Namespace: ns, Name: pod.Labels[controllers.LabelInstance]}
					p.mu.Unlock()
					now := metav1.Now()
					pod.Status.Phase = corev1.PodRunning
					pod.Status.PodIP, pod.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
					pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
					pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Ready: true,
						Image: pod.Spec.Containers[0].Image, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
					_ = p.c.Status().Update(ctx, pod) // a conflict is retried on the next pass
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// ring answers GET /ring for a pod the kubelet started: every pod of its Ingester ACTIVE.
type ring struct{ p *platform }

func (r ring) Ring(ctx context.Context, addr string) (map[string]string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	r.p.mu.Lock()
	ing, ok := r.p.ips[host]
	r.p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("connection refused")
	}
	var pods corev1.PodList
	if err := r.p.c.List(ctx, &pods, client.InNamespace(ing.Namespace), client.MatchingLabels{controllers.LabelInstance: ing.Name}); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil {
			m[pod.Name] = controllers.StateActive
		}
	}
	return m, nil
}

type okPods struct{}

func (okPods) PrepareShutdown(context.Context, string) error       { return nil }
func (okPods) CancelPrepareShutdown(context.Context, string) error { return nil }
func (okPods) Flush(context.Context, string) error                 { return nil }
func (okPods) Forget(context.Context, string, string) error        { return nil }

// eventually polls f until it returns nil; the bound is a deadline for a hung system, and
// outlasts the PodDisruptionBudget's 2-minute DeletionTimeout (see controllers'
// eventuallyBound: envtest deletes an evicted pod at once).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(8 * time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
