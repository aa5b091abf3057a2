// Command e2e-services runs the in-cluster services the end-to-end suite needs and the local
// cluster cannot reach outside: an OCI registry for plugin artifacts and a Go module proxy.
//
//	e2e-services registry -addr :5000            an OCI distribution registry (go-containerregistry's,
//	                                             blobs in memory: it lives as long as the pod)
//	e2e-services files -addr :8080 -dir DIR      serves DIR read-only over HTTP; pointed at a Go
//	                                             module cache's cache/download it is a GOPROXY
//
// Both log every request on stderr, so a failed spec's logs show what was asked for.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-services registry|files [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", ":8080", "address to listen on")
	dir := fs.String("dir", "", "directory to serve (files)")
	fs.Parse(os.Args[2:])

	var h http.Handler
	switch os.Args[1] {
	case "registry":
		h = registry.New(registry.Logger(log.New(os.Stderr, "registry: ", log.LstdFlags)))
	case "files":
		if *dir == "" {
			log.Fatal("files: -dir is required")
		}
		h = logRequests(http.FileServer(http.Dir(*dir)))
	default:
		log.Fatalf("unknown service %q: registry or files", os.Args[1])
	}
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("%s listening on %s", os.Args[1], *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &status{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rw, r)
		log.Printf("%s %s %d", r.Method, r.URL.Path, rw.code)
	})
}

type status struct {
	http.ResponseWriter
	code int
}

func (s *status) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }
