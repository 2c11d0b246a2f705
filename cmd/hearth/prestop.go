package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func init() {
	register("prestop", "preStop hook: move the local ingester to LEAVING before SIGTERM", runPrestop)
}

// runPrestop asks the local ingester to go LEAVING (POST /ingester/prepare-stop).
// A preStop hook must never block pod deletion: every failure, the ingester
// being already gone included, is reported on stderr and the command exits 0.
func runPrestop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hearth prestop", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:4040", "the local ingester's HTTP URL")
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
	if err := prestop(ctx, *url, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "hearth prestop: %v (ignored)\n", err)
		return nil
	}
	fmt.Fprintln(os.Stderr, "hearth prestop: ingester is LEAVING")
	return nil
}

func prestop(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(url, "/")+"/ingester/prepare-stop", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
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
