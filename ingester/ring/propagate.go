package ring

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/go-kit/log/level"
	dskitring "github.com/grafana/dskit/ring"
)

// WaitSeenLeaving waits, at most timeout, until this process's own ring client
// and every other live member (asked with GET /ring at its address) see this
// instance LEAVING. Until then a peer may still pick it as a write replica, and
// a write refused here would fail the quorum (with RF 2, any refused replica
// does). Members that do not answer are not waited for: they cannot send
// writes either. It returns the members that had not confirmed when it gave up
// (nil when all did).
func (r *Ring) WaitSeenLeaving(ctx context.Context, timeout time.Duration) []string {
	if timeout <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	self := r.cfg.Ring.InstanceID
	hc, scheme := r.peerHTTP()
	confirmed := map[string]bool{}
	failures := map[string]int{}
	for {
		var pending []string
		if st, err := r.client.GetInstanceState(self); err != nil || st != dskitring.LEAVING {
			pending = append(pending, self+" (own ring client)")
		}
		members, err := r.Members(ctx)
		if err != nil {
			pending = append(pending, "own ring: "+err.Error())
		}
		for _, m := range members {
			if m.ID == self || confirmed[m.ID] || m.State == "UNHEALTHY" || m.Address == "" {
				continue
			}
			state, err := peerSeesState(ctx, hc, scheme+"://"+m.Address, self)
			switch {
			case err != nil:
				// Gone or not serving (it sends no writes), or busy: ask again, at most thrice.
				if failures[m.ID]++; failures[m.ID] >= 3 {
					confirmed[m.ID] = true
				} else {
					pending = append(pending, fmt.Sprintf("%s (%v)", m.ID, err))
				}
			case state == dskitring.LEAVING.String() || state == "":
				confirmed[m.ID] = true // "": it has already seen us removed
			default:
				pending = append(pending, fmt.Sprintf("%s (sees %s)", m.ID, state))
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(pending)
			level.Warn(r.logger).Log("msg", "not every member saw this instance LEAVING in time; their writes may still come here", "timeout", timeout, "pending", fmt.Sprint(pending))
			return pending
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SetPeerClient sets how WaitSeenLeaving calls the other members at their ring
// addresses (the internal listeners): the client's transport (TLS with a client
// certificate when -ingester.client.tls-enabled) and the scheme ("https" then).
// Default: plain HTTP.
func (r *Ring) SetPeerClient(c *http.Client, scheme string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peerClient, r.peerScheme = c, scheme
}

// peerHTTP is the client and scheme for calls to the other members' internal
// listeners (SetPeerClient), with a short per-call timeout.
func (r *Ring) peerHTTP() (*http.Client, string) {
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	scheme := "http"
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peerClient != nil {
		hc.Transport = r.peerClient.Transport
		scheme = r.peerScheme
	}
	return hc, scheme
}

// peersSeeActive is nil when every other member that is not UNHEALTHY holds
// this instance as ACTIVE in its ring (asked over its internal listener), or
// says which does not. It is what min-ready-duration waits for by the clock:
// evidence that the whole ring routes writes and reads here.
func (r *Ring) peersSeeActive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	self := r.cfg.Ring.InstanceID
	members, err := r.Members(ctx)
	if err != nil {
		return err
	}
	hc, scheme := r.peerHTTP()
	for _, m := range members {
		if m.ID == self || m.State == "UNHEALTHY" {
			continue
		}
		if m.Address == "" {
			return fmt.Errorf("%s has no address to ask", m.ID)
		}
		state, err := peerSeesState(ctx, hc, scheme+"://"+m.Address, self)
		if err != nil {
			return fmt.Errorf("%s: %w", m.ID, err)
		}
		if state != dskitring.ACTIVE.String() {
			return fmt.Errorf("%s sees this instance %q", m.ID, state)
		}
	}
	return nil
}

// peerSeesState asks the member at base (scheme://host:port) for its ring
// page and returns the state it holds for id ("" when id is not in its ring).
func peerSeesState(ctx context.Context, hc *http.Client, base, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+PathRing, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s%s: %s", base, PathRing, resp.Status)
	}
	var page Page
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return "", err
	}
	for _, s := range page.Shards {
		if s.ID == id {
			return s.State, nil
		}
	}
	return "", nil
}
