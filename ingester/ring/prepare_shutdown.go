package ring

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/hearth-dev/hearth/internal/durable"
)

// PrepareShutdownFile is the prepare-shutdown marker's name in the data directory.
const PrepareShutdownFile = "prepare-shutdown"

// PrepareShutdown is the prepare-shutdown marker: a file in the data
// directory that says the next stop is a final leave (flush and upload
// everything, delete the tokens file, unregister from the ring). It survives
// restarts until unset.
type PrepareShutdown struct {
	path string
	mu   sync.Mutex
}

// NewPrepareShutdown is the marker <dataDir>/prepare-shutdown.
func NewPrepareShutdown(dataDir string) *PrepareShutdown {
	return &PrepareShutdown{path: filepath.Join(dataDir, PrepareShutdownFile)}
}

// Path is the marker file.
func (p *PrepareShutdown) Path() string { return p.path }

// IsSet says whether the marker file exists.
func (p *PrepareShutdown) IsSet() bool {
	_, err := os.Stat(p.path)
	return err == nil
}

// Set creates the marker durably (written whole, then renamed into place).
func (p *PrepareShutdown) Set() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return err
	}
	return durable.WriteFile(p.path, []byte("set\n"), 0o644)
}

// Unset removes the marker durably; unsetting an unset marker is not an error.
func (p *PrepareShutdown) Unset() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.Remove(p.path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return durable.SyncDir(filepath.Dir(p.path))
}

// ServeHTTP is /ingester/prepare-shutdown: GET answers "set" or "unset",
// POST sets the marker, DELETE unsets it (both 204 No Content).
func (p *PrepareShutdown) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if p.IsSet() {
			fmt.Fprintln(w, "set")
		} else {
			fmt.Fprintln(w, "unset")
		}
	case http.MethodPost:
		if err := p.Set(); err != nil {
			http.Error(w, "setting the prepare-shutdown marker: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		if err := p.Unset(); err != nil {
			http.Error(w, "removing the prepare-shutdown marker: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
