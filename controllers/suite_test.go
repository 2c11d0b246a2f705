package controllers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// k8sVersion is the version of the control-plane binaries hack/build-k8s.sh builds.
const k8sVersion = "v1.37.2"

// platform is a real kube-apiserver and etcd (envtest), the real kube-controller-manager
// running the StatefulSet and garbage-collector controllers, and the operator's manager.
type platform struct {
	env        *envtest.Environment
	cfg        *rest.Config
	c          client.Client // direct, uncached
	kubeconfig string        // for kubectl
	kcm        *exec.Cmd
	kcmLog     *testutil.SyncBuffer
	kcmDone    chan struct{} // closed when kube-controller-manager exits
	cancel     context.CancelFunc
	mgrDone    chan error
	ring       *fakeRing
	pods       *fakePods
}

var (
	platformOnce sync.Once
	thePlatform  *platform
	platformErr  error
	testScheme   = runtime.NewScheme()
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(hearthv1.AddToScheme(testScheme))
}

func TestMain(m *testing.M) {
	code := m.Run()
	if thePlatform != nil {
		if code != 0 {
			log := thePlatform.kcmLog.String()
			if len(log) > 4000 {
				log = log[len(log)-4000:]
			}
			fmt.Fprintf(os.Stderr, "--- kube-controller-manager log (tail):\n%s\n", log)
		}
		thePlatform.stop()
	}
	os.Exit(code)
}

// kcmProblem says whether kube-controller-manager died, for failure messages.
func kcmProblem() string {
	if thePlatform == nil || thePlatform.kcmDone == nil {
		return ""
	}
	select {
	case <-thePlatform.kcmDone:
		return " (kube-controller-manager exited: see its log below)"
	default:
		return ""
	}
}

// assetsDir finds the control-plane binaries: KUBEBUILDER_ASSETS, else bin/k8s/<version>
// under the repository root.
func assetsDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "k8s", k8sVersion), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test directory")
		}
		dir = parent
	}
}

// getPlatform starts the platform once for the whole package. Missing binaries fail the
// test: they are part of the test platform, never a reason to skip.
func getPlatform(t *testing.T) *platform {
	t.Helper()
	platformOnce.Do(func() { thePlatform, platformErr = startPlatform() })
	if platformErr != nil {
		t.Fatalf("starting the test control plane: %v", platformErr)
	}
	return thePlatform
}

func startPlatform() (*platform, error) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(false), zap.Level(zapLevel())))
	assets, err := assetsDir()
	if err != nil {
		return nil, err
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kube-controller-manager"} {
		if fi, err := os.Stat(filepath.Join(assets, b)); err != nil || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%s not found in %s: run 'make k8s-bins' (hack/build-k8s.sh) or set KUBEBUILDER_ASSETS", b, assets)
		}
	}
	p := &platform{ring: &fakeRing{}, pods: &fakePods{}}
	p.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                testScheme,
	}
	if p.cfg, err = p.env.Start(); err != nil {
		return nil, fmt.Errorf("envtest: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			p.stop()
		}
	}()
	if p.c, err = client.New(p.cfg, client.Options{Scheme: testScheme}); err != nil {
		return nil, err
	}

	// kube-controller-manager: real StatefulSet and garbage-collector controllers.
	admin, err := p.env.AddUser(envtest.User{Name: "kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hearth-envtest-")
	if err != nil {
		return nil, err
	}
	p.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p.kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	p.kcmLog = &testutil.SyncBuffer{}
	p.kcm = exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+p.kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=garbage-collector-controller,statefulset-controller,persistentvolumeclaim-protection-controller,disruption-controller",
		"--concurrent-gc-syncs=5",
		"-v=1",
	)
	p.kcm.Stdout, p.kcm.Stderr = p.kcmLog, p.kcmLog
	if err := p.kcm.Start(); err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	p.kcmDone = make(chan struct{})
	go func() { _ = p.kcm.Wait(); close(p.kcmDone) }()

	// The operator, as `hearth operator` runs it (minus leader election and servers).
	mgr, err := ctrl.NewManager(p.cfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: CacheByObject()},
	})
	if err != nil {
		return nil, err
	}
	r := &IngesterReconciler{Ring: p.ring, Pods: p.pods, Resync: 2 * time.Second}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.mgrDone = make(chan error, 1)
	go func() { p.mgrDone <- mgr.Start(ctx) }()
	ok = true
	return p, nil
}

func zapLevel() zapcore.Level {
	if os.Getenv("HEARTH_TEST_VERBOSE") != "" {
		return -1
	}
	return 2 // errors only: keep test output readable
}

func (p *platform) stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.mgrDone
	}
	if p.kcm != nil && p.kcm.Process != nil {
		_ = p.kcm.Process.Kill()
		<-p.kcmDone
	}
	if p.kubeconfig != "" {
		_ = os.RemoveAll(filepath.Dir(p.kubeconfig))
	}
	if p.env != nil {
		_ = p.env.Stop()
	}
}

// fakeRing answers ring reads for pods the tests made ready: every member ACTIVE unless
// a test sets a state.
type fakeRing struct {
	mu     sync.Mutex
	states map[string]map[string]string // pod IP → members
}

func (f *fakeRing) set(ip string, members map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.states == nil {
		f.states = map[string]map[string]string{}
	}
	f.states[ip] = members
}

func (f *fakeRing) Ring(_ context.Context, addr string) (map[string]string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.states[host]
	if !ok {
		return nil, fmt.Errorf("connection refused")
	}
	return m, nil
}

// fakePods plays the ingesters' HTTP API: it records every call as "METHOD ip [arg]" and
// returns the error scripted for a call, if any. Addresses are pod IPs: tests give every
// pod a unique one (uniqueIP).
type fakePods struct {
	mu     sync.Mutex
	calls  []string
	fail   map[string]error         // "METHOD ip" → error
	hold   map[string]chan struct{} // "METHOD ip" → the call waits until it is closed
	onCall func(call string)
}

// block makes call wait (a hanging pod or bucket) until release is called or its
// context ends.
func (f *fakePods) block(call string) (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hold == nil {
		f.hold = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	f.hold[call] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.hold, call)
			f.mu.Unlock()
			close(ch)
		})
	}
}

// wait blocks while call is held (see block).
func (f *fakePods) wait(ctx context.Context, call string) error {
	f.mu.Lock()
	ch := f.hold[call]
	f.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakePods) record(call string) error {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	err, hook := f.fail[call], f.onCall
	f.mu.Unlock()
	if hook != nil {
		hook(call)
	}
	return err
}

// hook runs h on every call (nil: none), before the call returns.
func (f *fakePods) hook(h func(call string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onCall = h
}

func (f *fakePods) failing(call string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[string]error{}
	}
	if err == nil {
		delete(f.fail, call)
	} else {
		f.fail[call] = err
	}
}

// callsTo returns the recorded calls to the given IPs, in order.
func (f *fakePods) callsTo(ips ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[string]bool{}
	for _, ip := range ips {
		want[ip] = true
	}
	var out []string
	for _, c := range f.calls {
		parts := strings.Fields(c)
		if len(parts) >= 2 && want[parts[1]] {
			out = append(out, c)
		}
	}
	return out
}

func ipOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

func (f *fakePods) PrepareShutdown(_ context.Context, addr string) error {
	return f.record("PREPARE " + ipOf(addr))
}

func (f *fakePods) CancelPrepareShutdown(_ context.Context, addr string) error {
	return f.record("UNPREPARE " + ipOf(addr))
}

func (f *fakePods) Flush(ctx context.Context, addr string) error {
	call := "FLUSH " + ipOf(addr)
	if err := f.record(call); err != nil {
		return err
	}
	return f.wait(ctx, call)
}

func (f *fakePods) Forget(_ context.Context, addr, id string) error {
	return f.record("FORGET " + ipOf(addr) + " " + id)
}

// namespace creates a fresh namespace for one test (envtest has no namespace
// controller, so namespaces are never deleted).
func (p *platform) namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{}
	ns.GenerateName = "t-"
	if err := p.c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.retire(t, ns.Name) })
	return ns.Name
}

// retire removes a finished test's Ingesters (finalizer dropped: their fake pods need no
// flush). Without it every Ingester of every earlier test stays reconciled each Resync
// for the rest of the package, and that load (uncached reads, status writes on one
// shared API server) made the later tests' waits run out under a loaded machine.
func (p *platform) retire(t *testing.T, ns string) {
	var list hearthv1.IngesterList
	if err := p.c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Logf("retiring the Ingesters of %s: %v", ns, err)
		return
	}
	for i := range list.Items {
		ing := &list.Items[i]
		if err := p.c.Delete(context.Background(), ing); err != nil && !apierrors.IsNotFound(err) {
			t.Logf("retiring %s/%s: %v", ns, ing.Name, err)
			continue
		}
		// The finalizer may be re-read by the operator meanwhile: retry on conflicts.
		for try := 0; try < 10; try++ {
			cur := &hearthv1.Ingester{}
			err := p.c.Get(context.Background(), client.ObjectKeyFromObject(ing), cur)
			if apierrors.IsNotFound(err) {
				break
			}
			if err == nil {
				cur.Finalizers = nil
				err = p.c.Update(context.Background(), cur)
			}
			if err == nil || apierrors.IsNotFound(err) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
