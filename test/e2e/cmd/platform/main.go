// Command platform starts the end-to-end platform (kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler, the node agent and `hearth operator`) and keeps
// it running until interrupted:
//
//	go run ./test/e2e/cmd/platform [-dir DIR] [-operator=true] [-apply FILE.yaml] [-ready-file FILE]
//
// It prints the KUBECONFIG path; `kubectl --kubeconfig=PATH get ingesters,pods` works.
// Pod logs are under DIR/node/logs, platform logs under DIR/logs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/hearth-dev/hearth/test/e2e/platform"
)

func main() {
	dir := flag.String("dir", "", "directory for the kubeconfig, logs and volumes (default: a new temporary directory, removed on exit)")
	operator := flag.Bool("operator", true, "run `hearth operator` against the API server (after installing the CRD)")
	hearth := flag.String("hearth", "", "hearth binary (default: built from the repository)")
	apply := flag.String("apply", "", "a manifest to `kubectl apply -f` once the platform is up")
	verbose := flag.Bool("v", false, "print the node agent's log lines")
	readyFile := flag.String("ready-file", "", "write the kubeconfig path to this file once the platform is up (and -apply done), for scripts to wait on")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := platform.Options{Dir: *dir, KeepDir: *dir != "", Operator: *operator, Hearth: *hearth, Log: os.Stderr}
	if !*verbose {
		opts.Log = quietWriter{}
	}
	p, err := platform.Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "platform:", err)
		os.Exit(1)
	}
	defer p.Stop()
	if *apply != "" {
		cmd := exec.Command("kubectl", "--kubeconfig="+p.Kubeconfig, "apply", "-f", *apply)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "kubectl apply:", err)
		}
	}
	fmt.Printf("platform is up (Ctrl-C stops it and every pod)\n")
	fmt.Printf("export KUBECONFIG=%s\n", p.Kubeconfig)
	fmt.Printf("platform logs: %s/logs, pod logs: %s/node/logs\n", p.Dir, p.Dir)
	if *readyFile != "" {
		// Written whole then renamed, so a reader never sees a partial file.
		tmp := *readyFile + ".tmp"
		err := os.WriteFile(tmp, []byte(p.Kubeconfig+"\n"), 0o644)
		if err == nil {
			err = os.Rename(tmp, *readyFile)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ready-file:", err)
		}
	}
	<-ctx.Done()
	fmt.Println("stopping")
}

// quietWriter prints only the platform's own progress lines.
type quietWriter struct{}

func (quietWriter) Write(b []byte) (int, error) {
	if len(b) >= 9 && string(b[:9]) == "platform:" {
		return os.Stderr.Write(b)
	}
	return len(b), nil
}
