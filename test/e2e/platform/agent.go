package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Image tells the agent how to run a container image as a local process.
type Image struct {
	// Binary is the local executable that stands for the image's Entrypoint.
	Binary string
	// Entrypoint is the command path inside the image ("/hearth"): a container command
	// naming it runs Binary.
	Entrypoint string
	// ExtraArgs are appended to a command whose first argument (the subcommand) is the
	// key. They stand for what a pod's own network namespace gives for free; $(POD_IP) and
	// $(PORT_<name>) (a container port by name) are expanded in them.
	ExtraArgs map[string][]string
}

// HearthImage runs the hearth binary. In a pod, `hearth ingester` listens on all
// interfaces of the pod's own network namespace and `hearth prestop` reaches it on
// localhost; here every pod shares the host's loopback, so the ingester's HTTP servers
// (public and internal) are bound to the pod IP and prestop is pointed at the internal
// one (its scheme and client certificate still come from the rendered config file).
func HearthImage(binary string) Image {
	return Image{
		Binary:     binary,
		Entrypoint: "/hearth",
		ExtraArgs:  hearthExtraArgs(true, true),
	}
}

// HearthImageFor is HearthImage for a hearth binary of any release: the extra arguments
// follow the flags the binary has (its `ingester -help` and `prestop -help`), so that an
// earlier release, which had neither an internal listener nor prestop's -addr, runs too.
func HearthImageFor(binary string) (Image, error) {
	help := func(sub string) (string, error) {
		// -help exits 0 or 2 depending on the release; the text is what counts.
		out, err := exec.Command(binary, sub, "-help").CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s -help: %w", binary, sub, err)
		}
		return string(out), nil
	}
	ing, err := help("ingester")
	if err != nil {
		return Image{}, err
	}
	pre, err := help("prestop")
	if err != nil {
		return Image{}, err
	}
	if !hasFlag(ing, "server.http-listen-address") {
		return Image{}, fmt.Errorf("%s ingester has no -server.http-listen-address: cannot bind it to a pod IP:\n%s", binary, ing)
	}
	img := HearthImage(binary)
	img.ExtraArgs = hearthExtraArgs(hasFlag(ing, "server.internal-listen-address"), hasFlag(pre, "addr"))
	return img, nil
}

// hasFlag says whether a Go flag package usage text lists -name.
func hasFlag(usage, name string) bool {
	for _, line := range strings.Split(usage, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "-"+name {
			return true
		}
	}
	return false
}

// hearthExtraArgs are HearthImage's extra arguments for a binary with (or without) an
// internal listener and prestop's -addr: without them (v0.1.0) the ingester serves
// everything on its HTTP port and prestop takes that port's URL.
func hearthExtraArgs(internalListener, prestopAddr bool) map[string][]string {
	ing := []string{"-server.http-listen-address=$(POD_IP)"}
	if internalListener {
		ing = append(ing, "-server.internal-listen-address=$(POD_IP)")
	}
	pre := []string{"-url=http://$(POD_IP):$(PORT_http)"}
	if prestopAddr {
		pre = []string{"-addr=$(POD_IP):$(PORT_internal)"}
	}
	return map[string][]string{"ingester": ing, "prestop": pre}
}

// AgentConfig configures an Agent.
type AgentConfig struct {
	Client   kubernetes.Interface
	NodeName string
	// Dir holds pods' directories (materialized volumes, logs) and the PV directories.
	Dir string
	// Images the agent can run, by the exact image name in the pod spec; any other image
	// waits with reason ImagePullBackOff.
	Images map[string]Image
	// StorageClasses whose pending claims get a PV (claims without a class always do).
	StorageClasses []string
	Log            io.Writer
	// IPPrefix is the first three octets of pod IPs, e.g. "127.77.3." (default: random
	// in 127.16-250.x, so that two platforms on one machine do not collide).
	IPPrefix      string
	SyncInterval  time.Duration // pod and claim polling (default 250ms)
	ProbeInterval time.Duration // readiness probing (default 1s, whatever the probe says)
	// VolumeRefreshInterval is how often the ConfigMap and Secret volumes of running pods
	// are compared with their source and rewritten when it changed, as the kubelet's
	// periodic sync does (default 1s; a kubelet takes up to about a minute).
	VolumeRefreshInterval time.Duration
	BackoffBase           time.Duration // crash-loop delay after the second exit (default 1s), doubling; the first restarts at once
	BackoffMax            time.Duration // (default 20s)
}

// Agent plays the kubelet for one Node: it registers the Node and keeps it Ready, gives
// each pending claim a hostPath PV (a directory), and runs the containers of pods bound to
// its node as local processes, each pod on its own loopback address.
//
// Differences from a kubelet, all forced by having no containers:
//   - Volumes cannot be mounted: ConfigMap and Secret volumes are written into a per-pod
//     directory, claims use their PV's directory, and every occurrence of a mount path in
//     the command, the arguments and materialized files is rewritten to that directory.
//   - There is no cluster DNS: in args and materialized YAML files, a value
//     "[dns+]<svc>.<ns>.svc[.cluster.local]:<port>" is replaced by "<ip>:<port>" for each
//     pod (other than this one) the Service selects that has an IP, resolved when the
//     container starts; a list entry becomes several entries (none when no other pod has
//     an IP yet, as DNS would answer for a headless Service with publishNotReadyAddresses).
//     "<pod>.<svc>.<ns>.svc:<port>" resolves to that pod.
//   - Readiness is probed every ProbeInterval rather than the probe's period.
type Agent struct {
	cfg    AgentConfig
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	pods   map[types.UID]*agentPod
	usedIP map[string]bool
	nextIP int
}

// NewAgent validates cfg and fills in defaults.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Client == nil || cfg.NodeName == "" || cfg.Dir == "" {
		return nil, errors.New("agent: Client, NodeName and Dir are required")
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.IPPrefix == "" {
		cfg.IPPrefix = fmt.Sprintf("127.%d.%d.", 16+rand.IntN(235), rand.IntN(256))
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 250 * time.Millisecond
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.VolumeRefreshInterval <= 0 {
		cfg.VolumeRefreshInterval = time.Second
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 20 * time.Second
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = abs
	return &Agent{cfg: cfg, pods: map[types.UID]*agentPod{}, usedIP: map[string]bool{}, nextIP: 2}, nil
}

func (a *Agent) logf(format string, args ...any) {
	fmt.Fprintf(a.cfg.Log, "%s agent: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// NodeName is the node the agent plays.
func (a *Agent) NodeName() string { return a.cfg.NodeName }

// Start registers the node and starts the agent's loops; Stop ends them.
func (a *Agent) Start(ctx context.Context) error {
	for _, d := range []string{"pods", "pv", "logs"} {
		if err := os.MkdirAll(filepath.Join(a.cfg.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := a.registerNode(ctx); err != nil {
		return fmt.Errorf("agent: registering node: %w", err)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.heartbeatLoop() }()
	go func() { defer a.wg.Done(); a.syncLoop() }()
	return nil
}

// Stop kills every pod process (SIGKILL) and ends the agent's loops. Pods stay in the API.
func (a *Agent) Stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.wg.Wait()
}

// Terminating reports whether the agent has begun the pod's termination (its preStop hook
// or SIGTERM): a process killed from then on dies in its final stop and is not restarted.
// A pod whose deletion the agent has not seen yet is not terminating here, although its
// deletionTimestamp is set: a crash then is restarted, as by a kubelet.
func (a *Agent) Terminating(namespace, name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.pods {
		if p.namespace == namespace && p.name == name && p.terminating {
			return true
		}
	}
	return false
}

// Kill sends SIGKILL to every container process of the pod (a crash); the agent restarts
// them like a kubelet would, unless the pod is terminating: then its termination ends there
// (a process that dies in its preStop hook or final stop).
func (a *Agent) Kill(namespace, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.pods {
		if p.namespace == namespace && p.name == name {
			n := 0
			for _, c := range p.containers {
				if c.killProcess() {
					n++
				}
			}
			if n == 0 {
				return fmt.Errorf("pod %s/%s has no running process", namespace, name)
			}
			a.logf("killed pod %s/%s (%d processes)", namespace, name, n)
			return nil
		}
	}
	return fmt.Errorf("pod %s/%s is not running on node %s", namespace, name, a.cfg.NodeName)
}

// Executable is the file the running process of the pod's container executes (its
// /proc/<pid>/exe), to tell which binary an image really runs. Of several incarnations
// of the pod name (one terminating), the one with a running process counts.
func (a *Agent) Executable(namespace, name, container string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.pods {
		if p.namespace != namespace || p.name != name {
			continue
		}
		for _, c := range p.containers {
			if c.spec.Name != container || !c.running() {
				continue
			}
			c.mu.Lock()
			pid := c.cmd.Process.Pid
			c.mu.Unlock()
			return os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		}
	}
	return "", fmt.Errorf("pod %s/%s has no running container %s on node %s", namespace, name, container, a.cfg.NodeName)
}

// PodLog is the container's log of every incarnation of the pod name (each a
// different UID), oldest first (by the time each log was last written), so the
// last matching line is the newest incarnation's.
func (a *Agent) PodLog(namespace, name, container string) string {
	paths, _ := filepath.Glob(filepath.Join(a.cfg.Dir, "logs", namespace+"_"+name+"_*", container+".log"))
	type logFile struct {
		path string
		mod  time.Time
	}
	var files []logFile
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			files = append(files, logFile{p, fi.ModTime()})
		}
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "== %s\n%s", f.path, data)
	}
	return b.String()
}

// ContainerRuns is the container's log of one incarnation of the pod (its UID), split by
// container start: runs[0] is what the first process wrote, runs[1] the first restart's,
// and so on. Each run begins with the agent's "=== <time> start <n>: <command>" line.
func (a *Agent) ContainerRuns(namespace, name string, uid types.UID, container string) []string {
	data, err := os.ReadFile(filepath.Join(a.cfg.Dir, "logs", namespace+"_"+name+"_"+string(uid), container+".log"))
	if err != nil {
		return nil
	}
	var runs []string
	for _, part := range strings.Split("\n"+string(data), "\n=== ")[1:] {
		runs = append(runs, "=== "+part)
	}
	return runs
}

// ---- node ----

func (a *Agent) nodeStatus() corev1.NodeStatus {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("64"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("250"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	return corev1.NodeStatus{
		Capacity:    res,
		Allocatable: res,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
		},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: a.cfg.NodeName}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: K8sVersion, OperatingSystem: "linux", Architecture: runtime.GOARCH,
			ContainerRuntimeVersion: "hearth-e2e://0", OSImage: "hearth e2e node agent",
		},
	}
}

func (a *Agent) registerNode(ctx context.Context) error {
	c := a.cfg.Client
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: map[string]string{
		"kubernetes.io/hostname": a.cfg.NodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": runtime.GOARCH,
	}}, Status: a.nodeStatus()}
	if _, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := a.updateNodeStatus(ctx); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: corev1.NamespaceNodeLease}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return a.renewLease(ctx)
}

func (a *Agent) updateNodeStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := a.nodeStatus()
		// Keep transition times of unchanged conditions.
		for i := range st.Conditions {
			for _, old := range n.Status.Conditions {
				if old.Type == st.Conditions[i].Type && old.Status == st.Conditions[i].Status {
					st.Conditions[i].LastTransitionTime = old.LastTransitionTime
				}
			}
		}
		n.Status = st
		_, err = a.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func (a *Agent) renewLease(ctx context.Context) error {
	leases := a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		dur := int32(40)
		holder := a.cfg.NodeName
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now}}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

func (a *Agent) heartbeatLoop() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
		if err := a.updateNodeStatus(ctx); err != nil && a.ctx.Err() == nil {
			a.logf("node status: %v", err)
		}
		if err := a.renewLease(ctx); err != nil && a.ctx.Err() == nil {
			a.logf("node lease: %v", err)
		}
		cancel()
	}
}

// ---- pods and claims ----

func (a *Agent) syncLoop() {
	t := time.NewTicker(a.cfg.SyncInterval)
	defer t.Stop()
	for {
		a.syncPods()
		a.provisionVolumes()
		a.resizeVolumes()
		select {
		case <-a.ctx.Done():
			a.mu.Lock()
			for _, p := range a.pods {
				p.gone()
			}
			a.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

func (a *Agent) syncPods() {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	list, err := a.cfg.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + a.cfg.NodeName})
	if err != nil {
		if a.ctx.Err() == nil {
			a.logf("listing pods: %v", err)
		}
		return
	}
	seen := map[types.UID]bool{}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range list.Items {
		pod := &list.Items[i]
		seen[pod.UID] = true
		p, ok := a.pods[pod.UID]
		if !ok {
			if pod.DeletionTimestamp != nil {
				// Never started here: nothing to stop.
				go a.deletePod(pod.Namespace, pod.Name, pod.UID)
				continue
			}
			if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			p = a.newPod(pod)
			a.pods[pod.UID] = p
			a.wg.Add(1)
			go func() { defer a.wg.Done(); a.runPod(p) }()
			continue
		}
		p.pod = pod.DeepCopy()
		if pod.DeletionTimestamp != nil {
			p.terminateOnce.Do(func() { close(p.terminate) })
		}
	}
	for uid, p := range a.pods {
		if !seen[uid] {
			p.gone()
		}
	}
}

// provisionVolumes creates a pre-bound hostPath PV for each pending claim of one of the
// agent's StorageClasses; the PV binder then binds both.
func (a *Agent) provisionVolumes() {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	claims, err := a.cfg.Client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, pvc := range claims.Items {
		if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
			continue
		}
		class := ""
		if pvc.Spec.StorageClassName != nil {
			class = *pvc.Spec.StorageClassName
		}
		if class != "" && !contains(a.cfg.StorageClasses, class) {
			continue
		}
		name := "pv-" + string(pvc.UID)
		dir := filepath.Join(a.cfg.Dir, "pv", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			a.logf("pv dir: %v", err)
			continue
		}
		size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		dirType := corev1.HostPathDirectoryOrCreate
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"hearth.dev/e2e-node": a.cfg.NodeName}},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
				AccessModes:                   pvc.Spec.AccessModes,
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				StorageClassName:              class,
				VolumeMode:                    pvc.Spec.VolumeMode,
				ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
					Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
				PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirType}},
			},
		}
		if _, err := a.cfg.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err == nil {
			a.logf("created PV %s for claim %s/%s", name, pvc.Namespace, pvc.Name)
		} else if !apierrors.IsAlreadyExists(err) {
			a.logf("creating PV for %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
}

// resizeVolumes plays the storage provider's resizer for the agent's volumes: a bound
// claim that asks for more than its volume has gets it, first on the PV (what a CSI
// resizer does), then in the claim's status.capacity (what the kubelet reports after
// growing the filesystem). Directories have no size, so both happen at once.
func (a *Agent) resizeVolumes() {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	claims, err := a.cfg.Client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		have := pvc.Status.Capacity[corev1.ResourceStorage]
		if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" || want.Cmp(have) <= 0 {
			continue
		}
		pv, err := a.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil || pv.Labels["hearth.dev/e2e-node"] != a.cfg.NodeName {
			continue
		}
		if pvCap := pv.Spec.Capacity[corev1.ResourceStorage]; pvCap.Cmp(want) < 0 {
			pv.Spec.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
			if _, err := a.cfg.Client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
				a.logf("resizing PV %s: %v", pv.Name, err)
				continue
			}
		}
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
		pvc.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: want}
		pvc.Status.AllocatedResourceStatuses = nil
		if _, err := a.cfg.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			a.logf("resizing claim %s/%s: %v", pvc.Namespace, pvc.Name, err)
			continue
		}
		a.logf("resized claim %s/%s from %s to %s", pvc.Namespace, pvc.Name, have.String(), want.String())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deletePod removes a pod whose containers are all stopped, as the kubelet does.
func (a *Agent) deletePod(ns, name string, uid types.UID) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	zero := int64(0)
	err := a.cfg.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.logf("deleting pod %s/%s: %v", ns, name, err)
	}
}

// allocateIP picks the next free 127.x.y.N whose container ports can be bound.
func (a *Agent) allocateIP(pod *corev1.Pod) (string, error) {
	for i := 0; i < 253; i++ {
		n := a.nextIP
		a.nextIP++
		if a.nextIP > 254 {
			a.nextIP = 2
		}
		ip := a.cfg.IPPrefix + strconv.Itoa(n)
		if a.usedIP[ip] || !bindable(ip, pod) {
			continue
		}
		a.usedIP[ip] = true
		return ip, nil
	}
	return "", errors.New("no free pod IP")
}

func bindable(ip string, pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		for _, port := range c.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port.ContainerPort))))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}

// resolve answers a cluster DNS name the way a headless Service's records would: the IPs
// of the pods the Service selects (not terminating, with an IP, other than self).
func (a *Agent) resolve(host, self string) ([]string, bool) {
	host = strings.TrimSuffix(strings.TrimSuffix(host, "."), ".cluster.local")
	parts := strings.Split(host, ".")
	var podName, svc, ns string
	switch {
	case len(parts) == 3 && parts[2] == "svc":
		svc, ns = parts[0], parts[1]
	case len(parts) == 4 && parts[3] == "svc":
		podName, svc, ns = parts[0], parts[1], parts[2]
	default:
		return nil, false
	}
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	s, err := a.cfg.Client.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
	if err != nil || len(s.Spec.Selector) == 0 {
		return nil, true
	}
	sel := labels.SelectorFromSet(s.Spec.Selector)
	a.mu.Lock()
	defer a.mu.Unlock()
	var ips []string
	for _, p := range a.pods {
		if p.namespace != ns || p.ip == "" || p.ip == self || p.terminating || !sel.Matches(labels.Set(p.pod.Labels)) {
			continue
		}
		if podName != "" && p.pod.Spec.Hostname != podName && p.name != podName {
			continue
		}
		ips = append(ips, p.ip)
	}
	sort.Strings(ips)
	return ips, true
}

// ---- one pod ----

type agentPod struct {
	uid             types.UID
	namespace, name string
	dir, logDir     string
	ip              string
	startTime       metav1.Time

	// guarded by Agent.mu
	pod         *corev1.Pod
	terminating bool

	terminate     chan struct{}
	terminateOnce sync.Once
	goneCh        chan struct{}
	goneOnce      sync.Once

	containers []*agentContainer
	mounts     map[string]string // volume name → host directory
	// versions are the resourceVersions of the ConfigMaps and Secrets last written into
	// the volumes (by volume name); lastRefresh is when they were last compared.
	versions    map[string]string
	lastRefresh time.Time
	volumesErr  string
	ipErr       string
	conds       map[corev1.PodConditionType]corev1.PodCondition
	lastStatus  *corev1.PodStatus
	everStarted bool
}

func (p *agentPod) gone() { p.goneOnce.Do(func() { close(p.goneCh) }) }

type agentContainer struct {
	spec     corev1.Container
	image    Image
	known    bool
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	exitErr  error
	started  time.Time
	restarts int32
	backoff  time.Duration
	next     time.Time // earliest (re)start
	waiting  *corev1.ContainerStateWaiting
	lastTerm *corev1.ContainerStateTerminated
	ready    bool
	fails    int32
	runs     int
}

func (c *agentContainer) killProcess() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	return true
}

func (c *agentContainer) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (a *Agent) newPod(pod *corev1.Pod) *agentPod {
	key := fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)
	p := &agentPod{
		uid: pod.UID, namespace: pod.Namespace, name: pod.Name, pod: pod.DeepCopy(),
		dir: filepath.Join(a.cfg.Dir, "pods", key), logDir: filepath.Join(a.cfg.Dir, "logs", key),
		startTime: metav1.Now(), terminate: make(chan struct{}), goneCh: make(chan struct{}),
		conds: map[corev1.PodConditionType]corev1.PodCondition{},
	}
	ip, err := a.allocateIP(pod)
	if err != nil {
		p.ipErr = err.Error()
	}
	p.ip = ip
	for _, cs := range pod.Spec.Containers {
		img, ok := a.cfg.Images[cs.Image]
		p.containers = append(p.containers, &agentContainer{spec: cs, image: img, known: ok})
	}
	a.logf("pod %s/%s (%s): IP %s", pod.Namespace, pod.Name, pod.UID, ip)
	return p
}

func (a *Agent) currentPod(p *agentPod) *corev1.Pod {
	a.mu.Lock()
	defer a.mu.Unlock()
	return p.pod
}

func (a *Agent) runPod(p *agentPod) {
	defer func() {
		a.mu.Lock()
		delete(a.pods, p.uid)
		if p.ip != "" {
			delete(a.usedIP, p.ip)
		}
		a.mu.Unlock()
		_ = os.RemoveAll(p.dir)
	}()
	_ = os.MkdirAll(p.logDir, 0o755)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastProbe := time.Time{}
	for {
		select {
		case <-p.goneCh:
			a.killAll(p)
			return
		case <-p.terminate:
			a.terminatePod(p)
			return
		case <-tick.C:
		}
		a.step(p, time.Since(lastProbe) >= a.cfg.ProbeInterval)
		a.refreshVolumes(p)
		if time.Since(lastProbe) >= a.cfg.ProbeInterval {
			lastProbe = time.Now()
		}
		a.reportStatus(p)
	}
}

func (a *Agent) killAll(p *agentPod) {
	for _, c := range p.containers {
		if c.killProcess() {
			<-c.done
		}
	}
}

// step prepares volumes, (re)starts containers and probes readiness.
func (a *Agent) step(p *agentPod, probe bool) {
	if p.ip == "" {
		return
	}
	if p.mounts == nil {
		m, err := a.prepareVolumes(p)
		if err != nil {
			p.volumesErr = err.Error()
			return
		}
		p.mounts, p.volumesErr = m, ""
	}
	now := time.Now()
	for _, c := range p.containers {
		if !c.known {
			c.waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
				Message: fmt.Sprintf("Back-off pulling image %q: the e2e node agent does not know this image", c.spec.Image)}
			continue
		}
		if c.cmd != nil && !c.running() {
			// The process exited: record it and back off before restarting.
			code := int32(0)
			reason := "Completed"
			var ee *exec.ExitError
			if errors.As(c.exitErr, &ee) {
				code = int32(ee.ExitCode())
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					code = 128 + int32(ws.Signal())
				}
				reason = "Error"
			}
			c.lastTerm = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
				StartedAt: metav1.NewTime(c.started), FinishedAt: metav1.Now(), ContainerID: c.containerID(p)}
			c.mu.Lock()
			c.cmd = nil
			c.mu.Unlock()
			c.ready, c.fails = false, 0
			c.restarts++
			if time.Since(c.started) > 2*time.Minute {
				c.backoff = 0
			}
			// As the kubelet: an exit with no back-off running (the first, or the first
			// after a long run) restarts at once; the next ones wait, doubling, in
			// CrashLoopBackOff.
			wait := c.backoff
			if c.backoff == 0 {
				c.backoff = a.cfg.BackoffBase
			} else {
				c.backoff = min(2*c.backoff, a.cfg.BackoffMax)
			}
			c.next = now.Add(wait)
			c.waiting = nil
			if wait > 0 {
				c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
					Message: fmt.Sprintf("back-off %s restarting failed container %s", wait, c.spec.Name)}
			}
			a.logf("pod %s/%s container %s exited (%d), restart %d in %s", p.namespace, p.name, c.spec.Name, code, c.restarts, wait)
		}
		if c.cmd == nil && !now.Before(c.next) {
			if err := a.startContainer(p, c); err != nil {
				c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
				c.backoff = min(max(2*c.backoff, a.cfg.BackoffBase), a.cfg.BackoffMax)
				c.next = now.Add(c.backoff)
				a.logf("pod %s/%s container %s: %v", p.namespace, p.name, c.spec.Name, err)
				continue
			}
			c.waiting = nil
			p.everStarted = true
		}
		if probe && c.cmd != nil {
			a.probe(p, c)
		}
	}
}

func (c *agentContainer) containerID(p *agentPod) string {
	return fmt.Sprintf("hearth-e2e://%s-%s-%d", p.uid, c.spec.Name, c.runs)
}

// probe runs the readiness probe (HTTP GET only; no probe means ready when running).
func (a *Agent) probe(p *agentPod, c *agentContainer) {
	rp := c.spec.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil {
		c.ready = c.running()
		return
	}
	port := portNumber(c.spec, rp.HTTPGet.Port.String())
	host := rp.HTTPGet.Host
	if host == "" {
		host = p.ip
	}
	scheme := strings.ToLower(string(rp.HTTPGet.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	timeout := time.Duration(max(rp.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()
	ok := false
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, port), rp.HTTPGet.Path), nil)
	if err == nil {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = resp.StatusCode >= 200 && resp.StatusCode < 400
		}
	}
	if ok {
		c.ready, c.fails = true, 0
		return
	}
	c.fails++
	if c.fails >= max(rp.FailureThreshold, 1) || !c.ready {
		c.ready = false
	}
}

func portNumber(c corev1.Container, port string) string {
	for _, p := range c.Ports {
		if p.Name == port {
			return strconv.Itoa(int(p.ContainerPort))
		}
	}
	return port
}

// prepareVolumes materializes the pod's volumes; an error means "not yet" (claim not
// bound, ConfigMap missing) and is retried.
func (a *Agent) prepareVolumes(p *agentPod) (map[string]string, error) {
	pod := a.currentPod(p)
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	mounts := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(p.dir, "volumes", v.Name)
		switch {
		case v.PersistentVolumeClaim != nil:
			pvc, err := a.cfg.Client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("claim %s: %v", v.PersistentVolumeClaim.ClaimName, err)
			}
			if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
				return nil, fmt.Errorf("claim %s is not bound yet", pvc.Name)
			}
			pv, err := a.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			switch {
			case pv.Spec.HostPath != nil:
				dir = pv.Spec.HostPath.Path
			case pv.Spec.Local != nil:
				dir = pv.Spec.Local.Path
			default:
				return nil, fmt.Errorf("PV %s is neither hostPath nor local", pv.Name)
			}
		case v.HostPath != nil:
			dir = v.HostPath.Path
		case v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil:
			// ConfigMaps and Secrets are written at each container start (see writeFiles).
		default:
			return nil, fmt.Errorf("volume %s: unsupported volume type", v.Name)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		mounts[v.Name] = dir
	}
	return mounts, nil
}

// podEnv builds a container's environment ($(VAR) expansion, downward API, ConfigMap and
// Secret keys).
func (a *Agent) podEnv(p *agentPod, c corev1.Container) ([]string, map[string]string, error) {
	pod := a.currentPod(p)
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, expand(e.Value, vars))
		case e.ValueFrom.FieldRef != nil:
			v, err := fieldValue(pod, p.ip, e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, nil, err
			}
			set(e.Name, v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			cm, err := a.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, err
			}
			set(e.Name, cm.Data[r.Key])
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			s, err := a.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, err
			}
			set(e.Name, string(s.Data[r.Key]))
		default:
			return nil, nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + p.dir, "TMPDIR=" + filepath.Join(p.dir, "tmp"),
		"HOSTNAME=" + pod.Name}
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, vars, nil
}

func fieldValue(pod *corev1.Pod, ip, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return ip, nil
	case "status.hostIP", "status.hostIPs":
		return "127.0.0.1", nil
	}
	if strings.HasPrefix(path, "metadata.labels['") && strings.HasSuffix(path, "']") {
		return pod.Labels[path[len("metadata.labels['"):len(path)-2]], nil
	}
	if strings.HasPrefix(path, "metadata.annotations['") && strings.HasSuffix(path, "']") {
		return pod.Annotations[path[len("metadata.annotations['"):len(path)-2]], nil
	}
	return "", fmt.Errorf("unsupported fieldRef %s", path)
}

// expand does Kubernetes $(VAR) expansion: $$ is a literal $, unknown references stay.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteByte(s[i])
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// command maps a container (or exec hook) command to the local binary and arguments.
func (a *Agent) command(p *agentPod, c *agentContainer, command, args []string, vars map[string]string, rw *rewriter) (string, []string, error) {
	cmd := append([]string(nil), command...)
	if len(cmd) == 0 {
		cmd = []string{c.image.Entrypoint}
	}
	if cmd[0] != c.image.Entrypoint {
		return "", nil, fmt.Errorf("command %q is not the image's entrypoint %s", cmd[0], c.image.Entrypoint)
	}
	all := append(cmd[1:], args...)
	var out []string
	for _, s := range all {
		out = append(out, rw.arg(expand(s, vars))...)
	}
	if len(out) > 0 {
		special := map[string]string{"POD_IP": p.ip, "POD_NAMESPACE": p.namespace}
		for _, port := range c.spec.Ports {
			if port.Name != "" {
				special["PORT_"+port.Name] = strconv.Itoa(int(port.ContainerPort))
			}
		}
		for _, x := range c.image.ExtraArgs[out[0]] {
			out = append(out, expand(x, special))
		}
	}
	return c.image.Binary, out, nil
}

func (a *Agent) newRewriter(p *agentPod, c corev1.Container) *rewriter {
	rw := &rewriter{resolve: func(host string) ([]string, bool) { return a.resolve(host, p.ip) }}
	for _, m := range c.VolumeMounts {
		dir, ok := p.mounts[m.Name]
		if !ok {
			continue
		}
		if m.SubPath != "" {
			dir = filepath.Join(dir, m.SubPath)
		}
		rw.mounts = append(rw.mounts, [2]string{filepath.Clean(m.MountPath), dir})
	}
	sort.Slice(rw.mounts, func(i, j int) bool { return len(rw.mounts[i][0]) > len(rw.mounts[j][0]) })
	return rw
}

func (a *Agent) startContainer(p *agentPod, c *agentContainer) error {
	rw := a.newRewriter(p, c.spec)
	if err := a.writeFiles(p, rw); err != nil {
		return err
	}
	env, vars, err := a.podEnv(p, c.spec)
	if err != nil {
		return err
	}
	bin, args, err := a.command(p, c, c.spec.Command, c.spec.Args, vars, rw)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(p.dir, "tmp"), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(p.logDir, c.spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s start %d: %s %s\n", time.Now().Format(time.RFC3339Nano), c.runs+1, bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.done, c.started, c.exitErr = cmd, done, time.Now(), nil
	c.runs++
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		close(done)
	}()
	a.logf("pod %s/%s container %s started (pid %d, run %d)", p.namespace, p.name, c.spec.Name, cmd.Process.Pid, c.runs)
	return nil
}

// terminatePod is the kubelet's graceful termination: preStop hooks, SIGTERM, SIGKILL
// after the grace period, then the pod is removed from the API.
func (a *Agent) terminatePod(p *agentPod) {
	a.mu.Lock()
	p.terminating = true
	pod := p.pod
	a.mu.Unlock()
	grace := int64(30)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	deadline := time.Now().Add(time.Duration(grace) * time.Second)
	a.logf("pod %s/%s terminating (grace %ds)", p.namespace, p.name, grace)
	for _, c := range p.containers {
		c.ready = false
	}
	a.reportStatus(p)

	var wg sync.WaitGroup
	for _, c := range p.containers {
		if !c.running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.runPreStop(p, c, deadline)
			c.mu.Lock()
			proc := c.cmd.Process
			c.mu.Unlock()
			_ = syscall.Kill(-proc.Pid, syscall.SIGTERM)
			wait := time.Until(deadline)
			if wait < 2*time.Second {
				wait = 2 * time.Second // the kubelet's minimum after an overrunning hook
			}
			select {
			case <-c.done:
			case <-time.After(wait):
				a.logf("pod %s/%s container %s: grace period over, SIGKILL", p.namespace, p.name, c.spec.Name)
				_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
				<-c.done
			case <-p.goneCh:
				_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
				<-c.done
			}
		}()
	}
	wg.Wait()
	for _, c := range p.containers {
		if c.cmd != nil {
			code := int32(0)
			var ee *exec.ExitError
			if errors.As(c.exitErr, &ee) {
				code = int32(ee.ExitCode())
			}
			c.lastTerm = &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed", StartedAt: metav1.NewTime(c.started),
				FinishedAt: metav1.Now(), ContainerID: c.containerID(p)}
			c.mu.Lock()
			c.cmd = nil
			c.mu.Unlock()
		}
		c.waiting = nil
	}
	a.reportStatus(p)
	a.deletePod(p.namespace, p.name, p.uid)
	a.logf("pod %s/%s terminated and deleted", p.namespace, p.name)
}

func (a *Agent) runPreStop(p *agentPod, c *agentContainer, deadline time.Time) {
	lc := c.spec.Lifecycle
	if lc == nil || lc.PreStop == nil {
		return
	}
	ctx, cancel := context.WithDeadline(a.ctx, deadline)
	defer cancel()
	switch {
	case lc.PreStop.Exec != nil:
		rw := a.newRewriter(p, c.spec)
		env, vars, err := a.podEnv(p, c.spec)
		if err != nil {
			a.logf("preStop %s/%s: %v", p.namespace, p.name, err)
			return
		}
		bin, args, err := a.command(p, c, lc.PreStop.Exec.Command, nil, vars, rw)
		if err != nil {
			a.logf("preStop %s/%s: %v", p.namespace, p.name, err)
			return
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env, cmd.Dir = env, p.dir
		out, err := cmd.CombinedOutput()
		a.logf("preStop %s/%s: %s %v: err=%v %s", p.namespace, p.name, bin, args, err, strings.TrimSpace(string(out)))
	case lc.PreStop.HTTPGet != nil:
		h := lc.PreStop.HTTPGet
		url := fmt.Sprintf("http://%s%s", net.JoinHostPort(p.ip, portNumber(c.spec, h.Port.String())), h.Path)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	case lc.PreStop.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(lc.PreStop.Sleep.Seconds) * time.Second):
		}
	}
}

// reportStatus writes the pod's status when it changed.
func (a *Agent) reportStatus(p *agentPod) {
	st := a.podStatus(p)
	if p.lastStatus != nil && equality.Semantic.DeepEqual(*p.lastStatus, st) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := a.cfg.Client.CoreV1().Pods(p.namespace).Get(ctx, p.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pod.UID != p.uid {
			return nil
		}
		ns := pod.Status.DeepCopy()
		ns.Phase, ns.PodIP, ns.PodIPs, ns.HostIP, ns.HostIPs = st.Phase, st.PodIP, st.PodIPs, st.HostIP, st.HostIPs
		ns.StartTime = st.StartTime
		ns.ContainerStatuses = st.ContainerStatuses
		ns.Message, ns.Reason = st.Message, st.Reason
		for _, c := range st.Conditions {
			found := false
			for i := range ns.Conditions {
				if ns.Conditions[i].Type == c.Type {
					ns.Conditions[i] = c
					found = true
				}
			}
			if !found {
				ns.Conditions = append(ns.Conditions, c)
			}
		}
		pod.Status = *ns
		_, err = a.cfg.Client.CoreV1().Pods(p.namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			a.logf("pod %s/%s status: %v", p.namespace, p.name, err)
		}
		return
	}
	p.lastStatus = &st
}

func (a *Agent) podStatus(p *agentPod) corev1.PodStatus {
	st := corev1.PodStatus{Phase: corev1.PodPending, HostIP: "127.0.0.1", HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}}, StartTime: &p.startTime}
	if p.ip != "" {
		st.PodIP, st.PodIPs = p.ip, []corev1.PodIP{{IP: p.ip}}
	} else {
		st.Message = p.ipErr
	}
	if p.everStarted {
		st.Phase = corev1.PodRunning
	}
	allReady := len(p.containers) > 0
	for _, c := range p.containers {
		cs := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: "hearth-e2e://" + c.spec.Image,
			RestartCount: c.restarts, Ready: c.ready}
		running := c.cmd != nil
		started := running
		cs.Started = &started
		switch {
		case running:
			cs.ContainerID = c.containerID(p)
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.started)}
		case c.waiting != nil:
			cs.State.Waiting = c.waiting.DeepCopy()
		case c.lastTerm != nil && p.terminating:
			cs.State.Terminated = c.lastTerm.DeepCopy()
		default:
			reason := "ContainerCreating"
			msg := p.volumesErr
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		}
		if c.lastTerm != nil && cs.State.Terminated == nil {
			cs.LastTerminationState.Terminated = c.lastTerm.DeepCopy()
		}
		if !c.ready {
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	boolCond := func(b bool) corev1.ConditionStatus {
		if b {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	set := func(t corev1.PodConditionType, s corev1.ConditionStatus) {
		old, ok := p.conds[t]
		if !ok || old.Status != s {
			old = corev1.PodCondition{Type: t, Status: s, LastTransitionTime: metav1.Now()}
			p.conds[t] = old
		}
		st.Conditions = append(st.Conditions, old)
	}
	set(corev1.PodReadyToStartContainers, boolCond(p.mounts != nil))
	set(corev1.PodInitialized, corev1.ConditionTrue)
	set(corev1.ContainersReady, boolCond(allReady))
	set(corev1.PodReady, boolCond(allReady && !p.terminating))
	return st
}
