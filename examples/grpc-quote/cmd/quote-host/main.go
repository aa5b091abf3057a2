// Command quote-host is the gRPC example's host: the quote service over gRPC (JSON codec, see
// package quoterpc), its logic a Go plugin hot-swapped through the host library.
//
// It takes host/serve's standard flags (-addr, -addr-file, -shared, -plugin, -digest,
// -max-versions, -max-extra-rss, -panic-threshold, -drain-timeout, -v) and serves the
// control socket in -shared. SIGHUP re-execs in place (same PID, the generation in every reply
// goes up); SIGTERM and SIGINT drain and exit.
//
// The grpc.Server is served as an http.Handler through serve.H2C (HTTP/2 over cleartext):
// the re-exec hand-off follows net/http servers' connections, so this is how a gRPC service
// keeps its listener across a re-exec and drains with GOAWAY instead of failing calls. Errors
// map to gRPC codes: no version serving yet → Unavailable, a plugin panic → Internal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/splice-dev/splice/examples/grpc-quote/quote"
	"github.com/splice-dev/splice/examples/grpc-quote/quoterpc"
	"github.com/splice-dev/splice/host"
	"github.com/splice-dev/splice/host/serve"
)

func main() {
	cfg := serve.Config{APIVersion: quote.APIVersion}
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()
	err := serve.Run(context.Background(), cfg, func(h *serve.Host[quote.Quoter]) ([]serve.Service, error) {
		gs := grpc.NewServer()
		gs.RegisterService(&quoterpc.ServiceDesc, &server{slot: h.Slot, pid: os.Getpid(), generation: h.Generation()})
		return []serve.Service{{Name: "grpc", Server: serve.H2C(gs)}}, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "quote-host:", err)
		os.Exit(1)
	}
}

// server implements quoterpc.QuotesServer on the slot.
type server struct {
	slot       *host.Slot[quote.Quoter]
	pid        int
	generation int
}

func (s *server) Quote(ctx context.Context, req *quoterpc.QuoteRequest) (*quoterpc.QuoteReply, error) {
	reply := &quoterpc.QuoteReply{HostPID: s.pid, HostGeneration: s.generation}
	err := s.slot.CallVersion(req.Topic, func(q quote.Quoter, v *host.Version) error {
		reply.Release, reply.Digest = q.Release(), v.Digest()
		var err error
		reply.Text, err = q.Quote(req.Topic)
		return err
	})
	if err != nil {
		return nil, grpcError(err)
	}
	return reply, nil
}

// grpcError maps the slot's errors to gRPC statuses.
func grpcError(err error) error {
	var perr *host.PanicError
	switch {
	case errors.Is(err, host.ErrNoVersion):
		return status.Error(codes.Unavailable, "no plugin version loaded yet")
	case errors.As(err, &perr):
		return status.Error(codes.Internal, "plugin panicked (recovered and counted)")
	default:
		return status.Error(codes.Unknown, "plugin: "+err.Error())
	}
}
