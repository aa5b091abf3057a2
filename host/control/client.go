package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/splice-dev/splice/host/preflight"
)

// Client talks to a host's control socket. It is safe for concurrent use. Every call honours
// its context; a host that is re-executing queues the connection in its socket's backlog and
// answers from the new image, so callers should give calls a deadline rather than retry.
type Client struct {
	socket string
	http   *http.Client
}

// maxResponseBytes bounds what the client reads from a host (a status with many versions is
// tens of kilobytes).
const maxResponseBytes = 8 << 20

// NewClient returns a client for the control socket at socketPath (normally
// filepath.Join(sharedDir, SocketName)).
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		// One request per connection: a host hands its control socket over on re-exec and
		// closes idle connections first; a fresh connection per call never races that close.
		DisableKeepAlives: true,
		// Bounds a wedged host even when the caller forgot a deadline.
		ResponseHeaderTimeout: 2 * time.Minute,
	}
	return &Client{socket: socketPath, http: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// Facts returns the running host binary's build facts, for the preflight.
func (c *Client) Facts(ctx context.Context) (*preflight.Facts, error) {
	var f preflight.Facts
	if err := c.do(ctx, http.MethodGet, "/v1/facts", nil, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Status returns the host's versions, counters and last swap.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Load opens and verifies a plugin file (and swaps to it when req.Swap is set).
func (c *Client) Load(ctx context.Context, req LoadRequest) (*LoadResponse, error) {
	var r LoadResponse
	if err := c.do(ctx, http.MethodPost, "/v1/load", &req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Swap makes a loaded version current.
func (c *Client) Swap(ctx context.Context, req SwapRequest) (*SwapResult, error) {
	var r SwapResult
	if err := c.do(ctx, http.MethodPost, "/v1/swap", &req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Rollback drops the canary, or else returns to the previous current version.
func (c *Client) Rollback(ctx context.Context) (*SwapResult, error) {
	var r SwapResult
	if err := c.do(ctx, http.MethodPost, "/v1/rollback", &RollbackRequest{}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Route sets or ends the request-level canary split.
func (c *Client) Route(ctx context.Context, req RouteRequest) (*SwapResult, error) {
	var r SwapResult
	if err := c.do(ctx, http.MethodPost, "/v1/route", &req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// SetLimits replaces the host's memory bounds; it returns the bounds now in force.
func (c *Client) SetLimits(ctx context.Context, req LimitsRequest) (*Limits, error) {
	var r Limits
	if err := c.do(ctx, http.MethodPost, "/v1/limits", &req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Reexec asks the host to re-exec itself; it returns once the host has accepted, before the
// hand-off completes. Poll Status until Handoff.Generation reaches the returned generation.
func (c *Client) Reexec(ctx context.Context, req ReexecRequest) (*ReexecResponse, error) {
	var r ReexecResponse
	if err := c.do(ctx, http.MethodPost, "/v1/reexec", &req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (c *Client) do(ctx context.Context, method, path string, in Request, out any) error {
	var body io.Reader
	if in != nil {
		// Validate locally too: a request the host would refuse is a bug in the caller, and
		// this error says so without a round trip.
		if err := in.Validate(); err != nil {
			return Errorf(CodeBadRequest, "invalid %s request: %v", path, err)
		}
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://splice-host"+path, body)
	if err != nil {
		return fmt.Errorf("build %s request: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on control socket %s (is the host running and the shared directory mounted?): %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("read %s response: %w", path, err)
	}
	if resp.StatusCode >= 400 {
		var er ErrorResponse
		if err := json.Unmarshal(data, &er); err != nil || er.Error.Code == "" {
			return &Error{Status: resp.StatusCode, Code: CodeInternal, Message: fmt.Sprintf("host answered %s %s with %q", method, path, Truncate(string(data), 200))}
		}
		return &Error{Status: resp.StatusCode, Code: er.Error.Code, Reason: er.Error.Reason, Message: er.Error.Message}
	}
	// Every answer is one JSON object: null would decode into a zero answer without complaint.
	if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("decode %s response: the host answered %d with %q, not a JSON object", path, resp.StatusCode, Truncate(string(data), 200))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s response: %w", path, err)
	}
	return nil
}
