package app

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/grafana/dskit/runtimeconfig"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/validation"
	"github.com/hearth-dev/hearth/internal/kitlog"
)

// RuntimeConfig is the module that loads -runtime-config.file (per-tenant
// overrides of the limits) at start and every -runtime-config.reload-period.
// A file that does not load fails the start; a later bad reload keeps the
// last good config and logs the error (hearth_runtime_config_last_reload_successful 0).
const RuntimeConfig = "runtime-config"

// Paths of the limits endpoints.
const (
	PathRuntimeConfig = "/runtime_config"       // internal port: every tenant's overrides
	PathTenantLimits  = "/api/v1/tenant_limits" // public port: the caller's tenant's effective limits
)

// defaultLimits are the limits of a tenant without overrides: the -limits.*
// and -querier.* flags, the retention from -compactor.blocks-retention-period.
func (c *Config) defaultLimits() validation.Limits {
	l := c.Limits
	l.RetentionPeriod = c.Compactor.RetentionPeriod
	return l
}

func (a *App) initRuntimeConfig() (services.Service, error) {
	cfg := a.Config
	defaults := cfg.defaultLimits()
	var mgr *runtimeconfig.Manager
	current := func() *validation.RuntimeConfig {
		if mgr == nil {
			return nil
		}
		rc, _ := mgr.GetConfig().(*validation.RuntimeConfig)
		return rc
	}
	a.Overrides = validation.NewOverrides(defaults, current)
	a.Registry.MustRegister(validation.NewExporter(a.Overrides))
	// Per-tenant retention: an override wins over -compactor.tenant-retention-periods.
	a.Config.Compactor.RetentionFor = func(t string) (time.Duration, bool) {
		if l, ok := a.Overrides.Tenants()[t]; ok && l.RetentionPeriod != defaults.RetentionPeriod {
			return l.RetentionPeriod, true
		}
		return 0, false
	}
	a.internalMux.HandleFunc(PathRuntimeConfig, a.serveRuntimeConfig)
	a.mux.HandleFunc(PathTenantLimits, a.serveTenantLimits)
	if len(cfg.RuntimeConfig.LoadPath) == 0 {
		return nil, nil
	}
	rcfg := cfg.RuntimeConfig
	rcfg.Loader = func(r io.Reader) (any, error) { return validation.LoadRuntimeConfig(r, defaults) }
	m, err := runtimeconfig.New(rcfg, "hearth", prometheus.WrapRegistererWithPrefix("hearth_", a.Registry), kitlog.New(a.Logger))
	if err != nil {
		return nil, err
	}
	mgr = m
	return m, nil
}

// serveRuntimeConfig is GET /runtime_config: the overrides in effect, every
// key of every tenant; ?mode=diff: only what differs from the defaults.
func (a *App) serveRuntimeConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	tenants := a.Overrides.Tenants()
	out := map[string]map[string]any{}
	switch mode := r.URL.Query().Get("mode"); mode {
	case "", "all":
		for t, l := range tenants {
			out[t] = l.Map()
		}
	case "diff":
		for t, l := range tenants {
			if d := validation.Diff(l, a.Overrides.Defaults()); len(d) > 0 {
				out[t] = d
			}
		}
	default:
		http.Error(w, "mode must be all or diff, not "+mode, http.StatusBadRequest)
		return
	}
	b, err := yaml.Marshal(map[string]any{"overrides": out})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/yaml; charset=utf-8")
	_, _ = w.Write(b)
}

// serveTenantLimits is GET /api/v1/tenant_limits: the effective limits of
// the request's tenant (X-Scope-OrgID), as JSON with the YAML keys.
func (a *App) serveTenantLimits(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	t, err := tenant.FromHeader(r.Header, a.Config.Auth.MultitenancyEnabled)
	if err != nil {
		status := http.StatusUnauthorized
		if tenant.IsInvalid(err) {
			status = http.StatusBadRequest
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a.Overrides.For(t).Map())
}
