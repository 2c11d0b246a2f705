package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
)

// RingReader reads the ring as one ingester sees it.
type RingReader interface {
	// Ring returns the members' states (ACTIVE, JOINING, PENDING, LEAVING, UNHEALTHY)
	// keyed by instance id, read from the ingester at addr (host:port).
	Ring(ctx context.Context, addr string) (map[string]string, error)
}

// HTTPRingReader reads GET /ring with Accept: application/json, the dskit ring page's
// JSON form: {"shards":[{"id":..., "state":...}, ...]}, on the pod's internal port
// (Target: with the Ingester's client certificate under spec.tls), so that it does not
// depend on how the public port is served.
type HTTPRingReader struct {
	Target PodTarget // nil: plain HTTP to the internal port
}

// Ring implements RingReader.
func (r HTTPRingReader) Ring(ctx context.Context, addr string) (map[string]string, error) {
	base, c := "http://"+AdminAddr(addr), (*http.Client)(nil)
	if r.Target != nil {
		var err error
		if base, c, err = r.Target(ctx, addr); err != nil {
			return nil, err
		}
	}
	if c == nil {
		c = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ring", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /ring from %s: %s", base, resp.Status)
	}
	return ParseRing(resp.Body)
}

// ParseRing decodes the ring page's JSON.
func ParseRing(r interface{ Read([]byte) (int, error) }) (map[string]string, error) {
	var page struct {
		Shards []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"shards"`
	}
	if err := json.NewDecoder(r).Decode(&page); err != nil {
		return nil, fmt.Errorf("decoding /ring: %w", err)
	}
	out := make(map[string]string, len(page.Shards))
	for _, s := range page.Shards {
		out[s.ID] = strings.ToUpper(s.State)
	}
	return out, nil
}

// RingStatusOf counts members by state and summarizes them for kubectl, against the
// desired replica count: "3/3 ACTIVE", "2/3 ACTIVE, 1 LEAVING".
func RingStatusOf(members map[string]string, desired int32) hearthv1.RingStatus {
	var s hearthv1.RingStatus
	for _, st := range members {
		switch st {
		case "ACTIVE":
			s.Active++
		case "JOINING":
			s.Joining++
		case "PENDING":
			s.Pending++
		case "LEAVING":
			s.Leaving++
		default:
			s.Unhealthy++
		}
	}
	parts := []string{fmt.Sprintf("%d/%d ACTIVE", s.Active, desired)}
	for _, p := range []struct {
		n    int32
		name string
	}{{s.Joining, "JOINING"}, {s.Pending, "PENDING"}, {s.Leaving, "LEAVING"}, {s.Unhealthy, "UNHEALTHY"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	s.Summary = strings.Join(parts, ", ")
	return s
}

func podHTTPAddr(podIP string) string {
	return net.JoinHostPort(podIP, strconv.Itoa(HTTPPort))
}
