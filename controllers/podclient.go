package controllers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PodClient calls an ingester pod's HTTP API, addressed as host:port (the pod IP and
// HTTPPort). Tests inject a fake that records calls and returns scripted errors.
type PodClient interface {
	// PrepareShutdown sets the marker: the pod's next stop flushes, uploads and unregisters.
	PrepareShutdown(ctx context.Context, addr string) error
	// CancelPrepareShutdown removes the marker.
	CancelPrepareShutdown(ctx context.Context, addr string) error
	// Flush cuts the head and uploads it, returning when done (POST /ingester/flush?wait=true).
	Flush(ctx context.Context, addr string) error
	// Forget removes a member from the ring (POST /ring forget=<id>).
	Forget(ctx context.Context, addr, id string) error
}

// HTTPPodClient is the PodClient of a running operator.
type HTTPPodClient struct {
	// Client defaults to one with podCallTimeout (5s); Flush uses FlushTimeout instead.
	Client *http.Client
	// FlushTimeout bounds one pod's flush (default 5 minutes).
	FlushTimeout time.Duration
	// Target, when set, turns the pod address the callers give into the admin URL
	// (scheme://host:internal-port) and its client (nil: Client); see SecurePodTargets.
	Target PodTarget
}

func (c HTTPPodClient) do(ctx context.Context, method, addr, path string, body url.Values, timeout time.Duration) error {
	hc := c.Client
	if hc == nil {
		hc = &http.Client{Timeout: timeout}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	base := "http://" + addr
	if c.Target != nil {
		b, thc, err := c.Target(ctx, addr)
		if err != nil {
			return err
		}
		base = b
		if thc != nil {
			hc = thc // bounded by ctx's timeout
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 && resp.StatusCode/100 != 3 {
		return fmt.Errorf("%s %s on %s: %s: %s", method, path, addr, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// PrepareShutdown implements PodClient.
func (c HTTPPodClient) PrepareShutdown(ctx context.Context, addr string) error {
	return c.do(ctx, http.MethodPost, addr, "/ingester/prepare-shutdown", nil, podCallTimeout)
}

// CancelPrepareShutdown implements PodClient.
func (c HTTPPodClient) CancelPrepareShutdown(ctx context.Context, addr string) error {
	return c.do(ctx, http.MethodDelete, addr, "/ingester/prepare-shutdown", nil, podCallTimeout)
}

// Flush implements PodClient.
func (c HTTPPodClient) Flush(ctx context.Context, addr string) error {
	t := c.FlushTimeout
	if t <= 0 {
		t = 5 * time.Minute
	}
	return c.do(ctx, http.MethodPost, addr, "/ingester/flush?wait=true", nil, t)
}

// Forget implements PodClient.
func (c HTTPPodClient) Forget(ctx context.Context, addr, id string) error {
	return c.do(ctx, http.MethodPost, addr, "/ring", url.Values{"forget": {id}}, podCallTimeout)
}
