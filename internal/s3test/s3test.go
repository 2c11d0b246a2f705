// Package s3test runs a real S3-compatible server (versitygw, built from the Go module
// proxy by hack/build-versitygw.sh) on a free 127.0.0.1 port for tests. The server
// serves a directory of the test's; Stop and Restart simulate a bucket outage on the
// same address and data.
//
// A test that needs the server fails (never skips) when the binary cannot be built.
// HEARTH_VERSITYGW names a prebuilt binary to use instead.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// Version is the versitygw release the tests run.
const Version = "v1.8.0"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the versitygw binary, building it on first use (about 1.5 minutes
// cold; cached outside the work tree afterwards). It fails the test if it cannot.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() { binPath, binErr = findOrBuild() })
	if binErr != nil {
		t.Fatalf("s3test: versitygw %s is needed for this test and could not be built: %v", Version, binErr)
	}
	return binPath
}

func findOrBuild() (string, error) {
	if p := os.Getenv("HEARTH_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("HEARTH_VERSITYGW: %w", err)
		}
		return p, nil
	}
	cache := os.Getenv("HEARTH_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "hearth")
	}
	p := filepath.Join(cache, "bin", "versitygw-"+Version)
	if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
		return p, nil
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the repository (runtime.Caller)")
	}
	script := filepath.Join(filepath.Dir(self), "..", "..", "hack", "build-versitygw.sh")
	cmd := exec.Command(script)
	cmd.Env = append(os.Environ(), "VERSITYGW_VERSION="+Version)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v\n%s", script, err, stderr.String())
	}
	out := strings.TrimSpace(stdout.String())
	if _, err := os.Stat(out); err != nil {
		return "", fmt.Errorf("%s printed %q: %v", script, out, err)
	}
	return out, nil
}

// Server is a running versitygw with one bucket.
type Server struct {
	Endpoint  string // host:port on 127.0.0.1, plain HTTP
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string
	Dir       string // the posix backend's root directory

	t       testing.TB
	bin     string
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start builds (if needed) and starts versitygw on a free loopback port, waits until
// it answers, and creates the bucket "hearth-test". The server is stopped at the end
// of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		AccessKey: "hearth-test-access",
		SecretKey: "hearth-test-secret-key",
		Bucket:    "hearth-test",
		Region:    "us-east-1",
		Dir:       t.TempDir(),
		t:         t,
		bin:       Binary(t),
	}
	s.logPath = filepath.Join(t.TempDir(), "versitygw.log")
	s.Endpoint = freePort(t)
	t.Cleanup(s.Stop)
	s.start()
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("s3test: creating bucket %s: %v\n%s", s.Bucket, err, s.Log())
	}
	return s
}

func freePort(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
}

func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("s3test: server already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("s3test: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region, "--port", s.Endpoint, "--quiet",
		"posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the test binary, even on a crash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("s3test: starting %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	// Wait until it serves S3 requests (bounded).
	c := s.Client()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-exited:
			s.cmd = nil
			s.t.Fatalf("s3test: versitygw exited at start:\n%s", s.logLocked())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.ListBuckets(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || i > 600 {
			s.t.Fatalf("s3test: versitygw on %s not ready after 30s: %v\n%s", s.Endpoint, err, s.logLocked())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server (like a crash or a network outage) and waits for it to exit.
// It is a no-op when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Errorf("s3test: versitygw (pid %d) did not exit after SIGKILL", s.cmd.Process.Pid)
	}
	s.cmd = nil
}

// Restart starts the server again on the same address and directory (after Stop;
// it stops a running server first).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Running tells whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Client returns a plain S3 client (path-style) for checks outside the code under test.
func (s *Server) Client() *minio.Client {
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       false,
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		s.t.Fatalf("s3test: client: %v", err)
	}
	return c
}

// SetEnv sets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the test's duration
// (t.Setenv: not usable in parallel tests).
func (s *Server) SetEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
}

// ObjectPath is where the posix backend keeps an object on disk.
func (s *Server) ObjectPath(name string) string {
	return filepath.Join(s.Dir, s.Bucket, filepath.FromSlash(name))
}

// Log returns what the server printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logLocked()
}

func (s *Server) logLocked() string {
	b, _ := os.ReadFile(s.logPath)
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
