package localloop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// CheckLoopback refuses a listen address that is not on a loopback interface. The registry
// has no authentication: anything that can reach it can replace what a host loads.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %v; want HOST:PORT such as 127.0.0.1:5000", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address: the local registry has no authentication, so it listens only on 127.0.0.1 or [::1] (give e.g. 127.0.0.1:5000)", addr)
	}
	return nil
}

// RegistryOptions configure ServeRegistry.
type RegistryOptions struct {
	// Addr is the loopback address to listen on ("127.0.0.1:0" picks a port).
	Addr string
	// Dir, when set, keeps blobs (plugin layers and configs) in this directory across
	// restarts; manifests and tags are always held in memory.
	Dir string
	// Log receives one line per request; nil discards them.
	Log io.Writer
	// Ready is called with the address once the registry accepts connections.
	Ready func(addr string)
}

// ServeRegistry serves an OCI registry on a loopback address until ctx ends.
func ServeRegistry(ctx context.Context, o RegistryOptions) error {
	if err := CheckLoopback(o.Addr); err != nil {
		return err
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	opts := []registry.Option{registry.Logger(log.New(logw, "registry: ", log.LstdFlags))}
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return fmt.Errorf("blob directory: %w", err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(o.Dir)))
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("registry on %s stopped: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stop the registry: %w", err)
	}
	return nil
}
