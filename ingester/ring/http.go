package ring

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	dskitring "github.com/grafana/dskit/ring"
)

// Paths served by Handler.
const (
	PathRing            = "/ring"
	PathPrepareStop     = "/ingester/prepare-stop"
	PathPrepareShutdown = "/ingester/prepare-shutdown"
)

// Page is the JSON form of GET /ring (Accept: application/json): the ring as
// this instance sees it. It is a superset of the id/state/address/zone/
// timestamp fields of dskit's ring page JSON.
//
//	{
//	  "self": "ingester-0",
//	  "now": "2026-11-25T10:00:00Z",
//	  "shards": [
//	    {"id": "ingester-0", "state": "ACTIVE", "address": "10.0.0.7:4040",
//	     "zone": "", "timestamp": "2026-11-25T09:59:58Z",
//	     "registered_timestamp": "2026-11-25T09:00:00Z", "num_tokens": 128}
//	  ]
//	}
//
// state is PENDING, JOINING, ACTIVE, LEAVING, or UNHEALTHY when the last
// heartbeat ("timestamp", whole seconds) is older than the heartbeat timeout.
// Shards are sorted by id. With ?tokens=true each shard also lists "tokens".
type Page struct {
	Self   string    `json:"self"`
	Now    time.Time `json:"now"`
	Shards []Member  `json:"shards"`
}

// Member is one shard of Page.
type Member struct {
	ID                  string    `json:"id"`
	State               string    `json:"state"`
	Address             string    `json:"address"`
	Zone                string    `json:"zone"`
	Timestamp           time.Time `json:"timestamp"`
	RegisteredTimestamp time.Time `json:"registered_timestamp"`
	NumTokens           int       `json:"num_tokens"`
	Tokens              []uint32  `json:"tokens,omitempty"`
}

// Members is the ring as this instance's memberlist KV holds it, sorted by id,
// with UNHEALTHY for members past the heartbeat timeout.
func (r *Ring) Members(ctx context.Context) ([]Member, error) {
	desc, err := r.desc(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]Member, 0, len(desc.Ingesters))
	for id, inst := range desc.Ingesters {
		state := inst.State.String()
		if !inst.IsHealthy(dskitring.Reporting, r.cfg.Ring.HeartbeatTimeout, now) {
			state = "UNHEALTHY"
		}
		var reg time.Time
		if t := inst.GetRegisteredAt(); !t.IsZero() {
			reg = t.UTC()
		}
		out = append(out, Member{
			ID:                  id,
			State:               state,
			Address:             inst.Addr,
			Zone:                inst.Zone,
			Timestamp:           time.Unix(inst.Timestamp, 0).UTC(),
			RegisteredTimestamp: reg,
			NumTokens:           len(inst.Tokens),
			Tokens:              inst.Tokens,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Handler serves:
//   - GET /ring: dskit's ring status page (HTML), or Page as JSON with
//     Accept: application/json;
//   - POST /ring with form value forget=<id>: remove that member from the ring
//     (dskit's page does it; meant for UNHEALTHY members whose process is gone);
//   - POST /ingester/prepare-stop: SetLeaving (what `hearth prestop` calls);
//   - GET|POST|DELETE /ingester/prepare-shutdown: the prepare-shutdown marker.
func (r *Ring) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathRing, r.serveRing)
	mux.HandleFunc(PathPrepareStop, r.servePrepareStop)
	mux.Handle(PathPrepareShutdown, r.marker)
	return mux
}

func (r *Ring) serveRing(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		if strings.Contains(req.Header.Get("Accept"), "application/json") {
			members, err := r.Members(req.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if req.URL.Query().Get("tokens") != "true" {
				for i := range members {
					members[i].Tokens = nil
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(Page{Self: r.cfg.Ring.InstanceID, Now: time.Now().UTC(), Shards: members})
			return
		}
		r.lifecycler.ServeHTTP(w, req)
	case http.MethodPost:
		if req.FormValue("forget") == "" {
			http.Error(w, "POST /ring needs forget=<instance id>", http.StatusBadRequest)
			return
		}
		r.lifecycler.ServeHTTP(w, req)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (r *Ring) servePrepareStop(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.SetLeaving(req.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("LEAVING\n"))
}
