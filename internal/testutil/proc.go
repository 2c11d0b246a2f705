package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Hearth builds the hearth binary once per test process and returns its path.
func Hearth(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hearth-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "hearth")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/hearth")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		// A test binary killed by its timeout must not leave the build
		// running (they piled up and loaded the machine).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/hearth: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// handedOut are the ports FreePort returned in this process: a port is free
// until its process binds it, so without this a cluster's second FreePort
// could return its first one's port (it did, about once in a hundred starts).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a loopback TCP port that was free a moment ago and that it
// has not returned before in this process. It picks below Linux's ephemeral
// range (32768+), so a port the kernel hands out to some other socket
// meanwhile cannot take it; test processes running in parallel pick at
// random from 8,000 ports.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := 0; i < 200; i++ {
		port := 20000 + rand.IntN(8000)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		handedOut.ports[port] = true
		return port
	}
	t.Fatal("no free loopback port in 20000-28000")
	return 0
}

// Process is a hearth process started by a test.
type Process struct {
	t    testing.TB
	Args []string
	Port int
	URL  string
	// InternalPort and InternalURL are the internal listener's (replica API and
	// admin endpoints: flush, prepare-shutdown, ...); https with internal TLS.
	InternalPort int
	InternalURL  string
	cmd          *exec.Cmd
	log          *SyncBuffer
	done         chan struct{}
	err          error
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (a process's stdout
// and stderr, loggers) and readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartIngester runs `hearth ingester` on a loopback port with the given
// extra flags (the data dir among them) and waits until it is ready.
func StartIngester(t testing.TB, port int, args ...string) *Process {
	t.Helper()
	internal := FreePort(t)
	all := append([]string{"ingester", "-server.http-listen-address=127.0.0.1", "-server.http-listen-port=" + strconv.Itoa(port),
		"-server.internal-listen-address=127.0.0.1", "-server.internal-listen-port=" + strconv.Itoa(internal),
		"-memberlist.bind-port=" + strconv.Itoa(FreePort(t)), "-ingester.ring.min-ready-duration=0s",
		"-ingester.ring.instance-id=ingester-" + strconv.Itoa(port)}, args...)
	scheme, public := "http", "http"
	for _, a := range args { // flags given later win
		if v, ok := strings.CutPrefix(a, "-server.internal-listen-port="); ok {
			internal, _ = strconv.Atoi(v)
		}
		if strings.HasPrefix(a, "-server.internal-tls-cert-path=") {
			scheme = "https"
		}
		if strings.HasPrefix(a, "-server.http-tls-cert-path=") {
			public = "https"
		}
		if file, ok := strings.CutPrefix(a, "-config.file="); ok {
			if b, err := os.ReadFile(file); err == nil && bytes.Contains(b, []byte("http_tls:")) {
				public = "https"
			}
		}
	}
	p := &Process{t: t, Args: all, Port: port, URL: fmt.Sprintf("%s://127.0.0.1:%d", public, port),
		InternalPort: internal, InternalURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, internal), log: &SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(Hearth(t), all...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("log of hearth %v:\n%s", p.Args, p.Log())
		}
	})
	if err := p.WaitReady(60 * time.Second); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, p.Log())
	}
	return p
}

// Log is what the process printed so far.
func (p *Process) Log() string {
	return p.log.String()
}

// probeClient polls /ready as the kubelet's probe does: over HTTPS without
// verifying the certificate (the tests that use TLS verify it themselves).
var probeClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// WaitReady polls /ready.
func (p *Process) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("hearth exited before it was ready: %v", p.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/ready", nil)
		resp, err := probeClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("hearth not ready after %s", timeout)
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("hearth did not stop within %s after SIGTERM", timeout)
	}
}

// Wait waits up to timeout for the process to end by itself; it returns
// whether it ended and how (nil: exit status 0).
func (p *Process) Wait(timeout time.Duration) (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
