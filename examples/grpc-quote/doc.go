// Package grpcquote is the gRPC example service: a quote service whose logic is a Go plugin,
// hot-swapped through the host library, served over gRPC without protoc.
//
//	quote/          the contract: the Quoter interface and its APIVersion (host and plugins)
//	quoterpc/       the wire: a JSON codec registered with google.golang.org/grpc/encoding, the
//	                request and reply types, a hand-written grpc.ServiceDesc and a client call
//	cmd/quote-host/ the host: host/serve's generic entry point (serve.Run) with a grpc.Server
//	                served through serve.H2C, so the re-exec hand-off drains it
//	plugins/v1, v2  two plugin versions to swap between
//	e2e/            builds host and plugins for real and swaps v1 to v2 (and re-execs) under
//	                continuous calls, asserting none fails
//
// It is its own module so that the splice module does not gain grpc; plugins import only the
// contract package, never grpc.
package grpcquote
