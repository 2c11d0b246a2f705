package platform

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConfigMap and Secret volumes are written as the kubelet writes them (its AtomicWriter):
// the files live in a timestamped directory "..<time>", the symlink "..data" points at
// it, and each visible name is a symlink through "..data". An update writes a new
// directory and renames a new "..data" symlink over the old one, so a reader sees the
// old files or the new ones, never a mix; a file read again after the swap is the new
// one (what a runtime config reload relies on).

// volumeFile is one file of a volume: its content and mode.
type volumeFile struct {
	data []byte
	mode os.FileMode
}

// volumePayload reads the source of a ConfigMap or Secret volume and returns its files
// (mount paths and cluster names rewritten) and the source's resourceVersion; ok is false
// for other volumes and for a missing optional source.
func (a *Agent) volumePayload(ctx context.Context, pod *corev1.Pod, v corev1.Volume, rw *rewriter) (files map[string]volumeFile, version string, ok bool, err error) {
	var data map[string][]byte
	var items []corev1.KeyToPath
	mode := int32(0o644)
	switch {
	case v.ConfigMap != nil:
		cm, err := a.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
				return nil, "", false, nil
			}
			return nil, "", false, fmt.Errorf("configmap %s: %v", v.ConfigMap.Name, err)
		}
		data = map[string][]byte{}
		for k, s := range cm.Data {
			data[k] = []byte(s)
		}
		for k, b := range cm.BinaryData {
			data[k] = b
		}
		items, version = v.ConfigMap.Items, cm.ResourceVersion
		if v.ConfigMap.DefaultMode != nil {
			mode = *v.ConfigMap.DefaultMode
		}
	case v.Secret != nil:
		s, err := a.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			if v.Secret.Optional != nil && *v.Secret.Optional {
				return nil, "", false, nil
			}
			return nil, "", false, fmt.Errorf("secret %s: %v", v.Secret.SecretName, err)
		}
		data, items, version = s.Data, v.Secret.Items, s.ResourceVersion
		if v.Secret.DefaultMode != nil {
			mode = *v.Secret.DefaultMode
		}
	default:
		return nil, "", false, nil
	}
	if len(items) == 0 {
		for k := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	files = map[string]volumeFile{}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return nil, "", false, fmt.Errorf("volume %s: key %s missing", v.Name, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		files[filepath.Clean("/" + it.Path)[1:]] = volumeFile{data: rw.file(it.Path, b), mode: os.FileMode(m)}
	}
	return files, version, true, nil
}

// writeAtomic replaces the files of dir as the kubelet's AtomicWriter does (see above).
func writeAtomic(dir string, files map[string]volumeFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for name, f := range files {
		path := filepath.Join(ts, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.data, f.mode|0o200); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode); err != nil {
			return err
		}
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	// The visible names: one symlink per top-level name, through ..data.
	top := map[string]bool{}
	for name := range files {
		top[strings.SplitN(name, string(filepath.Separator), 2)[0]] = true
	}
	for name := range top {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", name) {
			continue
		}
		_ = os.RemoveAll(link) // a plain file or directory from an older layout
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == "..data" || n == filepath.Base(ts):
		case strings.HasPrefix(n, ".."):
			if n == old || e.IsDir() {
				_ = os.RemoveAll(filepath.Join(dir, n))
			}
		case !top[n]:
			_ = os.RemoveAll(filepath.Join(dir, n)) // a key gone from the source
		}
	}
	return nil
}

// writeFiles writes every ConfigMap and Secret volume of the pod (at each container
// start), rewriting mount paths and cluster DNS names in them (see Agent).
func (a *Agent) writeFiles(p *agentPod, rw *rewriter) error {
	pod := a.currentPod(p)
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	versions := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		files, version, ok, err := a.volumePayload(ctx, pod, v, rw)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := writeAtomic(p.mounts[v.Name], files); err != nil {
			return err
		}
		versions[v.Name] = version
	}
	p.versions, p.lastRefresh = versions, time.Now()
	return nil
}

// refreshVolumes rewrites the ConfigMap and Secret volumes of a running pod whose source
// changed, every VolumeRefreshInterval, as the kubelet does. Like the kubelet, it leaves
// volumes some container mounts with a subPath alone: those are never updated.
func (a *Agent) refreshVolumes(p *agentPod) {
	if p.mounts == nil || p.versions == nil || time.Since(p.lastRefresh) < a.cfg.VolumeRefreshInterval {
		return
	}
	p.lastRefresh = time.Now()
	pod := a.currentPod(p)
	if len(pod.Spec.Containers) == 0 {
		return
	}
	subPath := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" || m.SubPathExpr != "" {
				subPath[m.Name] = true
			}
		}
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	rw := a.newRewriter(p, pod.Spec.Containers[0])
	var updated []string
	for _, v := range pod.Spec.Volumes {
		if (v.ConfigMap == nil && v.Secret == nil) || subPath[v.Name] {
			continue
		}
		files, version, ok, err := a.volumePayload(ctx, pod, v, rw)
		if err != nil || !ok || version == p.versions[v.Name] {
			continue // a source gone: the kubelet keeps the last files too
		}
		if err := writeAtomic(p.mounts[v.Name], files); err != nil {
			a.logf("pod %s/%s volume %s: %v", p.namespace, p.name, v.Name, err)
			continue
		}
		p.versions[v.Name] = version
		updated = append(updated, v.Name)
	}
	if len(updated) > 0 {
		sort.Strings(updated)
		a.logf("pod %s/%s: volumes %s updated from their source", p.namespace, p.name, strings.Join(updated, ", "))
	}
}
