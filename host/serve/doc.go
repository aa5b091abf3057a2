// Package serve wires a host application in one call: the re-exec hand-off, the slot, the
// control socket in the shared directory, the initial plugin at a cold start, listeners that
// survive re-execs, serving, signals and the drain on shutdown. It is what the greeter
// example's main did by hand, in the order the host library requires:
//
//  1. host.NewHandoff (adopts listeners and slot state when this image comes from a re-exec);
//  2. host.New[T] (restores the serving versions after a re-exec, so before any listener
//     serves);
//  3. host.NewControlHandler;
//  4. at a cold start only, Config.PluginPath is loaded and swapped in (AllowMinor);
//  5. every listener through Handoff.Listen (so a re-exec hands it over), then the control
//     socket (host.ListenControl); Config.AddrFile gets the first service's bound address;
//  6. Handoff.Serve for every server;
//  7. SIGHUP re-execs in place (Slot.Reexec, same PID, current version kept); SIGTERM, SIGINT
//     or the end of ctx drain and shut down: every server's Shutdown (which sends HTTP/2
//     GOAWAY) and Handoff.Shutdown, bounded by Config.DrainTimeout.
//
// The lower-level API (package host) is unchanged; use it when this wiring does not fit.
//
// # Entry points
//
// HTTP serves one http.Handler on Config.Addr. Run is the generic entry point: the
// application returns its Services, each a listener address and the *http.Server on it.
// Both build the application's handlers from a *Host[T] rather than the bare *host.Slot[T]:
// handlers also need what only the wiring knows (the hand-off's Generation, which the greeter
// returns in X-Host-Generation; the logger; the configuration with its defaults), and a struct
// can grow without breaking them. Both return nil after a requested shutdown (ctx ended,
// SIGTERM, SIGINT) that drained in time, and an error when setup failed, a server stopped on
// its own, or the drain timed out. They install handlers for SIGHUP, SIGTERM and SIGINT while
// they run (signal.Stop on return): one Run per process.
//
// Why every service is an *http.Server and not any "Serve(net.Listener)/Shutdown(ctx)" server:
// the Handoff hands over a listener without failing a request only because it follows the
// server's connections (ConnState) and can stop and resume its accept loop; Handoff.Serve
// takes an *http.Server for that reason, and a server it does not follow would have its
// requests cut by the exec. gRPC fits through net/http: *grpc.Server is an http.Handler
// (ServeHTTP), and H2C returns a server speaking HTTP/2 over cleartext (prior knowledge, what
// gRPC clients send). On a re-exec or a shutdown its connections drain the HTTP/2 way: GOAWAY
// once the connection's streams are done, the client reconnecting — to the backlog the new
// image accepts from. An idle HTTP/2 connection is closed (GOAWAY) after the server's
// IdleTimeout, which Run sets to a third of DrainTimeout when it is zero, so that a re-exec's
// drain completes even when a client holds an idle connection open. The cost: grpc-go's
// ServeHTTP transport is slower than its own and lacks a few of its features (see its
// documentation); this package never imports grpc, which keeps the host module's dependency
// rule (standard library and logr).
//
// # Errors for HTTP
//
// StatusCode and WriteError map the host library's errors to HTTP answers:
//
//	host.ErrNoVersion          503 Service Unavailable  "no plugin version loaded yet"
//	*host.PanicError           500 Internal Server Error "plugin panicked (recovered and counted)"
//	host.ErrNotServable        503 Service Unavailable
//	host.ErrNoHandoff          503 Service Unavailable
//	host.ErrPathOutside        400 Bad Request
//	host.ErrPathNotFound       404 Not Found
//	host.ErrUnknownDigest      404 Not Found
//	host.ErrNoPrevious         409 Conflict
//	host.ErrPathTried          409 Conflict
//	host.ErrDigestInUse        409 Conflict
//	host.ErrAPIMajor           409 Conflict
//	host.ErrAPIMinor           409 Conflict
//	host.ErrPreflight          422 Unprocessable Entity
//	host.ErrLoad               422 Unprocessable Entity
//	*control.Error             its Status (500 when zero)
//	context.Canceled           499 (client closed request; nginx's convention)
//	context.DeadlineExceeded   504 Gateway Timeout
//	anything else              500 Internal Server Error "plugin: " + the error
//
// Only the first two (and the plugin's own errors) reach an application handler calling the
// slot; the others come from loads, swaps and re-execs, for applications exposing those.
//
// Logs are structured (logr key/values). When Config.Logger is unset, logs go to standard
// error through log/slog's text handler at verbosity Config.Verbosity.
package serve
