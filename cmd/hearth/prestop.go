package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hearth-dev/hearth/internal/tlsreload"
)

func init() {
	register("prestop", "preStop hook: move the local ingester to LEAVING before SIGTERM", runPrestop)
}

// defaultInternalPort is the ingester's -server.internal-listen-port default.
const defaultInternalPort = 4041

// prestopConfig is what prestop reads of the ingester's config file: where the
// internal (admin) listener is, whether it serves TLS, and the client TLS.
type prestopConfig struct {
	Server struct {
		InternalListenPort int                    `yaml:"internal_listen_port"`
		InternalTLS        tlsreload.ServerConfig `yaml:"internal_tls"`
	} `yaml:"server"`
	Ingester struct {
		Client tlsreload.ClientConfig `yaml:"client"`
	} `yaml:"ingester"`
}

// runPrestop asks the local ingester to go LEAVING (POST /ingester/prepare-stop on
// its internal port). A preStop hook must never block pod deletion: every failure,
// the ingester being already gone included, is reported on stderr and the command
// exits 0.
func runPrestop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hearth prestop", flag.ContinueOnError)
	configFile := fs.String("config.file", "", "the ingester's YAML config: the internal port, and TLS with the ingester client's certificate when the internal listener serves TLS")
	addr := fs.String("addr", "", "the ingester's internal listener, host:port (default 127.0.0.1 and the config's server.internal_listen_port, else 4041)")
	url := fs.String("url", "", "the ingester's internal URL, scheme included (overrides -addr)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hearth prestop [flags]\n\nMoves the local ingester to LEAVING (it keeps its tokens). Always exits 0.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := prestopFromConfig(ctx, *configFile, *addr, *url, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "hearth prestop: %v (ignored)\n", err)
		return nil
	}
	fmt.Fprintln(os.Stderr, "hearth prestop: ingester is LEAVING")
	return nil
}

func prestopFromConfig(ctx context.Context, configFile, addr, url string, timeout time.Duration) error {
	var cfg prestopConfig
	if configFile != "" {
		b, err := os.ReadFile(configFile)
		if err != nil {
			return err
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("%s: %w", configFile, err)
		}
	}
	hc := http.DefaultClient
	scheme := "http"
	if cfg.Server.InternalTLS.Enabled() {
		cc := cfg.Ingester.Client
		cc.Enabled = true
		c, err := cc.NewClient(nil)
		if err != nil {
			return fmt.Errorf("client TLS: %w", err)
		}
		hc = &http.Client{Transport: c.Transport(nil)}
		scheme = "https"
	}
	if url == "" {
		if addr == "" {
			port := cfg.Server.InternalListenPort
			if port == 0 {
				port = defaultInternalPort
			}
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
		url = scheme + "://" + addr
	}
	return prestop(ctx, hc, url, timeout)
}

func prestop(ctx context.Context, hc *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(url, "/")+"/ingester/prepare-stop", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
