// Package platform starts a local Kubernetes platform for end-to-end tests of Hearth: a
// real kube-apiserver and etcd (envtest), the real kube-controller-manager and
// kube-scheduler, a node agent that plays the kubelet for one Node by running each pod's
// container as a local process on its own loopback address (see Agent), and optionally
// `hearth operator` as a process. Everything listens on 127.0.0.0/8 only.
//
// The API server's aggregation layer is set up as kubeadm does it (a front-proxy CA and
// client certificate, FrontProxyCA), and the controller manager runs the
// HorizontalPodAutoscaler controller: a test can serve a metrics API (an APIService) from
// its own process and autoscale an Ingester through its scale subresource.
//
// It is test infrastructure: it never reads ../shared and the product never imports it.
package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// K8sVersion is the version of the control-plane binaries hack/build-k8s.sh builds.
const K8sVersion = "v1.37.2"

// DefaultImages are the images the agent runs with the hearth binary; any other image
// waits in ImagePullBackOff.
var DefaultImages = []string{"hearth:dev", "hearth:dev-2", "hearth:v0.1.0"}

// Options configure Start.
type Options struct {
	// RepoRoot is the module root (default: found from the working directory).
	RepoRoot string
	// Assets holds kube-apiserver, etcd, kube-controller-manager and kube-scheduler
	// (default: $KUBEBUILDER_ASSETS, else <RepoRoot>/bin/k8s/<K8sVersion>).
	Assets string
	// Dir is where the kubeconfig, logs, pod directories and volumes go (default: a new
	// temporary directory, removed by Stop unless KeepDir).
	Dir     string
	KeepDir bool
	// Hearth is the hearth binary (default: built from RepoRoot into Dir).
	Hearth string
	// Images the agent knows (default DefaultImages), all run with the Hearth binary
	// unless ImageBinaries names another.
	Images []string
	// ImageBinaries runs an image with another hearth binary (image → binary path), e.g.
	// "hearth:v0.1.0" with the previous release's build (internal/release). An image named
	// here is known to the agent even when Images does not list it. Nil: every image runs
	// Hearth.
	ImageBinaries map[string]string
	// StorageClass is the default StorageClass the agent provides volumes for
	// (default "hearth-local").
	StorageClass string
	// IngesterArgs are added to every `hearth ingester` a pod runs (after the pod's own
	// arguments, so they win); $(POD_IP), $(POD_NAMESPACE) and $(PORT_<name>) are
	// expanded. E.g. "-storage.filesystem.dir=/tmp/b/$(POD_NAMESPACE)" gives the pods of a
	// namespace one shared filesystem bucket.
	IngesterArgs []string
	// Operator runs `hearth operator` against the API server after the CRDs are
	// installed.
	Operator bool
	// OperatorArgs are added to the operator's flags.
	OperatorArgs []string
	// Log receives the platform's own progress lines (nil: discarded).
	Log io.Writer
}

// Platform is a running control plane with one node agent.
type Platform struct {
	Opts       Options
	Dir        string
	Kubeconfig string // a kubeconfig file for kubectl (user in system:masters)
	Config     *rest.Config
	Clientset  kubernetes.Interface
	Agent      *Agent
	// Operator is the operator process Start ran (Options.Operator), nil otherwise.
	Operator *Proc
	// FrontProxyCA is the PEM CA of the client certificate (common name
	// FrontProxyClientName) the API server presents to aggregated API servers: one
	// verifies it before trusting the caller's identity in the X-Remote-* headers.
	FrontProxyCA []byte

	env  *envtest.Environment
	mu   sync.Mutex
	proc []*Proc
}

// RepoRoot finds the module root above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func (o *Options) defaults() error {
	if o.RepoRoot == "" {
		r, err := RepoRoot()
		if err != nil {
			return err
		}
		o.RepoRoot = r
	}
	if o.Assets == "" {
		o.Assets = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if o.Assets == "" {
		o.Assets = filepath.Join(o.RepoRoot, "bin", "k8s", K8sVersion)
	}
	if abs, err := filepath.Abs(o.Assets); err == nil {
		o.Assets = abs
	}
	if len(o.Images) == 0 {
		o.Images = DefaultImages
	}
	if o.StorageClass == "" {
		o.StorageClass = "hearth-local"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// Start brings the whole platform up; on error everything started is stopped.
func Start(ctx context.Context, opts Options) (p *Platform, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler"} {
		if fi, err := os.Stat(filepath.Join(opts.Assets, b)); err != nil || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%s not found in %s: run 'make k8s-bins' (hack/build-k8s.sh) or set KUBEBUILDER_ASSETS", b, opts.Assets)
		}
	}
	ctrllog.SetLogger(logr.Discard()) // envtest's own logging; our progress goes to opts.Log
	p = &Platform{Opts: opts, Dir: opts.Dir}
	if p.Dir == "" {
		if p.Dir, err = os.MkdirTemp("", "hearth-e2e-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Stop()
			p = nil
		}
	}()
	logf := func(format string, a ...any) { fmt.Fprintf(opts.Log, "platform: "+format+"\n", a...) }

	if p.Opts.Hearth == "" {
		p.Opts.Hearth = filepath.Join(p.Dir, "bin", "hearth")
		logf("building hearth into %s", p.Opts.Hearth)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", p.Opts.Hearth, "./cmd/hearth")
		cmd.Dir = opts.RepoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return p, fmt.Errorf("go build ./cmd/hearth: %v\n%s", err, out)
		}
	}

	logf("starting kube-apiserver and etcd")
	p.env = &envtest.Environment{
		BinaryAssetsDirectory: opts.Assets,
		CRDDirectoryPaths:     []string{filepath.Join(opts.RepoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	fp, err := newFrontProxy(filepath.Join(p.Dir, "front-proxy"))
	if err != nil {
		return p, err
	}
	p.FrontProxyCA = fp.caPEM
	apiserverArgs := p.env.ControlPlane.GetAPIServer().Configure()
	for k, v := range fp.apiserverArguments {
		apiserverArgs.Set(k, v)
	}
	if p.Config, err = p.env.Start(); err != nil {
		return p, fmt.Errorf("envtest: %w", err)
	}
	admin, err := p.env.AddUser(envtest.User{Name: "hearth-e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return p, err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return p, err
	}
	p.Kubeconfig = filepath.Join(p.Dir, "kubeconfig")
	if err := os.WriteFile(p.Kubeconfig, kc, 0o600); err != nil {
		return p, err
	}
	p.Config = admin.Config()
	p.Config.QPS, p.Config.Burst = 200, 400 // the agent polls; no client-side throttling
	if p.Clientset, err = kubernetes.NewForConfig(p.Config); err != nil {
		return p, err
	}

	logf("starting kube-controller-manager and kube-scheduler")
	if _, err := p.StartProcess("kube-controller-manager", filepath.Join(opts.Assets, "kube-controller-manager"),
		"--kubeconfig="+p.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=statefulset-controller,persistentvolume-binder-controller,garbage-collector-controller,node-lifecycle-controller,persistentvolumeclaim-protection-controller,disruption-controller,horizontal-pod-autoscaler-controller",
		"--node-monitor-period=2s",
		"--horizontal-pod-autoscaler-sync-period=2s", // default 15s: a test's metric change acts within seconds
		"--concurrent-gc-syncs=5",
		"-v=1",
	); err != nil {
		return p, err
	}
	if _, err := p.StartProcess("kube-scheduler", filepath.Join(opts.Assets, "kube-scheduler"),
		"--kubeconfig="+p.Kubeconfig,
		"--authentication-kubeconfig="+p.Kubeconfig,
		"--authorization-kubeconfig="+p.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"-v=1",
	); err != nil {
		return p, err
	}

	if err := p.ensureStorageClass(ctx); err != nil {
		return p, err
	}

	images, err := agentImages(p.Opts)
	if err != nil {
		return p, err
	}
	p.Agent, err = NewAgent(AgentConfig{
		Client:         p.Clientset,
		NodeName:       "hearth-e2e-node",
		Dir:            filepath.Join(p.Dir, "node"),
		Images:         images,
		StorageClasses: []string{opts.StorageClass},
		Log:            opts.Log,
	})
	if err != nil {
		return p, err
	}
	logf("starting the node agent")
	if err := p.Agent.Start(ctx); err != nil {
		return p, err
	}
	if err := p.waitNodeSchedulable(ctx, 60*time.Second); err != nil {
		return p, err
	}

	if opts.Operator {
		logf("starting hearth operator")
		if p.Operator, err = p.StartOperator("hearth-operator", p.Opts.Hearth); err != nil {
			return p, err
		}
	}
	logf("up: KUBECONFIG=%s", p.Kubeconfig)
	return p, nil
}

// agentImages are the images the agent runs: every one of Images with Hearth, those of
// ImageBinaries with their own binary (with the extra arguments its flags call for), each
// with IngesterArgs.
func agentImages(o Options) (map[string]Image, error) {
	images := map[string]Image{}
	names := slices.Clone(o.Images)
	for name := range o.ImageBinaries {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		img := HearthImage(o.Hearth)
		if bin, ok := o.ImageBinaries[name]; ok {
			var err error
			if img, err = HearthImageFor(bin); err != nil {
				return nil, fmt.Errorf("image %s: %w", name, err)
			}
		}
		img.ExtraArgs["ingester"] = append(img.ExtraArgs["ingester"], o.IngesterArgs...)
		images[name] = img
	}
	return images, nil
}

// StartOperator runs `hearth operator` (the binary bin, "" for Options.Hearth) as the
// platform process name, with the platform's flags, Options.OperatorArgs and args.
func (p *Platform) StartOperator(name, bin string, args ...string) (*Proc, error) {
	if bin == "" {
		bin = p.Opts.Hearth
	}
	all := append([]string{"operator", "-kubeconfig=" + p.Kubeconfig, "-metrics-bind-address=0",
		"-health-probe-bind-address=0", "-resync=2s"}, p.Opts.OperatorArgs...)
	return p.StartProcess(name, bin, append(all, args...)...)
}

// ensureStorageClass creates the default StorageClass the agent provides volumes for.
func (p *Platform) ensureStorageClass(ctx context.Context) error {
	mode := storagev1.VolumeBindingImmediate
	reclaim := corev1.PersistentVolumeReclaimRetain
	expand := true
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        p.Opts.StorageClass,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:          "kubernetes.io/no-provisioner",
		VolumeBindingMode:    &mode,
		ReclaimPolicy:        &reclaim,
		AllowVolumeExpansion: &expand,
	}
	_, err := p.Clientset.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// waitNodeSchedulable waits until the node is Ready and the node lifecycle controller has
// removed the not-ready taint the API server adds to new nodes.
func (p *Platform) waitNodeSchedulable(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		n, err := p.Clientset.CoreV1().Nodes().Get(ctx, p.Agent.cfg.NodeName, metav1.GetOptions{})
		if err == nil {
			if len(n.Spec.Taints) == 0 {
				return nil
			}
			last = fmt.Sprintf("taints %v", n.Spec.Taints)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("node %s not schedulable after %s: %s", p.Agent.cfg.NodeName, timeout, last)
}

// Stop stops the operator, the agent (killing every pod process), the controllers and
// the API server, and removes Dir unless KeepDir.
func (p *Platform) Stop() {
	p.mu.Lock()
	procs := p.proc
	p.proc = nil
	p.mu.Unlock()
	// The operator first, so it does not react to pods going away.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
	if p.Agent != nil {
		p.Agent.Stop()
	}
	if p.env != nil {
		_ = p.env.Stop()
	}
	if !p.Opts.KeepDir && p.Opts.Dir == "" && p.Dir != "" {
		_ = os.RemoveAll(p.Dir)
	}
}

// Logs returns the tail (up to n bytes) of every platform process's log, for failure
// messages.
func (p *Platform) Logs(n int) string {
	p.mu.Lock()
	procs := append([]*Proc(nil), p.proc...)
	p.mu.Unlock()
	var b bytes.Buffer
	for _, pr := range procs {
		fmt.Fprintf(&b, "--- %s (tail of %s):\n%s\n", pr.Name, pr.LogPath, tail(pr.LogPath, n))
	}
	return b.String()
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Proc is a platform process (controller-manager, scheduler, operator) logging to a file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// StartProcess runs a platform process with its output in <Dir>/logs/<name>.log; Stop
// ends it.
func (p *Platform) StartProcess(name, bin string, args ...string) (*Proc, error) {
	logDir := filepath.Join(p.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	pr := &Proc{Name: name, LogPath: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(pr.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	pr.cmd = exec.Command(bin, args...)
	pr.cmd.Stdout, pr.cmd.Stderr = f, f
	pr.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := pr.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() { pr.err = pr.cmd.Wait(); f.Close(); close(pr.done) }()
	p.mu.Lock()
	p.proc = append(p.proc, pr)
	p.mu.Unlock()
	return pr, nil
}

// Exited says whether the process ended, and how.
func (pr *Proc) Exited() (bool, error) {
	select {
	case <-pr.done:
		return true, pr.err
	default:
		return false, nil
	}
}

// Kill sends SIGKILL to the process group (a crash: no cleanup, no lease released) and
// waits for it to end.
func (pr *Proc) Kill() {
	if pr.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGKILL)
	<-pr.done
}

// Log returns the process's whole log so far.
func (pr *Proc) Log() string {
	b, err := os.ReadFile(pr.LogPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Stop sends SIGTERM to the process group, SIGKILL after timeout, and waits.
func (pr *Proc) Stop(timeout time.Duration) {
	if pr.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-pr.done:
		return
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGKILL)
	<-pr.done
}
