package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/splice-dev/splice/examples/greeter"
	"github.com/splice-dev/splice/host"
	"github.com/splice-dev/splice/host/serve"
)

func main() {
	cfg := serve.Config{APIVersion: greeter.APIVersion}
	cfg.RegisterFlags(flag.CommandLine)
	// The major-API-change drill: an image whose host declares contract 2.0.0 stands for a host
	// rebuilt against a new major version of the contract; the drills/major plugin declares the
	// same. The contract package itself is shared and unchanged, as package hashes require.
	flag.StringVar(&cfg.APIVersion, "api-version", cfg.APIVersion, "plugin API version this host declares it was built against (drill: 2.0.0)")
	flag.Parse()
	if err := serve.HTTP(context.Background(), cfg, handler); err != nil {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

// handler serves /greet and /healthz on the slot.
func handler(h *serve.Host[greeter.Greeter]) http.Handler {
	pid := strconv.Itoa(os.Getpid())
	gen := strconv.Itoa(h.Generation())
	mux := http.NewServeMux()
	mux.HandleFunc("/greet", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host-PID", pid)
		w.Header().Set("X-Host-Generation", gen)
		greet(h.Slot, w, r)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if h.Slot.Current() == nil {
			serve.WriteError(w, host.ErrNoVersion)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// greet answers one greeting: the name is the query's (GET) or the body (POST, at most 1 KiB).
// Requests are routed between current and canary by X-Request-Key, or the name when absent.
func greet(slot *host.Slot[greeter.Greeter], w http.ResponseWriter, r *http.Request) {
	var name string
	switch r.Method {
	case http.MethodGet:
		name = r.URL.Query().Get("name")
	case http.MethodPost:
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		name = string(b)
	default:
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		return
	}
	key := r.Header.Get("X-Request-Key")
	if key == "" {
		key = name
	}
	var msg string
	err := slot.CallVersion(key, func(g greeter.Greeter, v *host.Version) error {
		w.Header().Set("X-Plugin-Version", g.Release())
		w.Header().Set("X-Plugin-Digest", v.Digest())
		var err error
		msg, err = g.Greet(name)
		return err
	})
	if err != nil {
		serve.WriteError(w, err)
		return
	}
	io.WriteString(w, msg+"\n")
}
