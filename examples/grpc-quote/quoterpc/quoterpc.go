// Package quoterpc is the quote service's gRPC wire without protoc: a JSON codec registered
// under the content subtype "json", plain Go request and reply types, a hand-written
// grpc.ServiceDesc, and the client call. Host and clients import it; plugins never do.
package quoterpc

import (
	"context"
	"encoding/json"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// CodecName is the codec's name, the gRPC content subtype: requests travel as
// "application/grpc+json".
const CodecName = "json"

// FullMethod is the one method's gRPC path.
const FullMethod = "/quote.Quotes/Quote"

func init() { encoding.RegisterCodec(jsonCodec{}) }

// jsonCodec marshals messages as JSON.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return CodecName }

// QuoteRequest asks for a quote on Topic (also the key routing it between current and canary).
type QuoteRequest struct {
	Topic string `json:"topic"`
}

// QuoteReply is the quote and who answered it.
type QuoteReply struct {
	Text string `json:"text"`
	// Release is the plugin's release, Digest its version's digest.
	Release string `json:"release"`
	Digest  string `json:"digest"`
	// HostPID and HostGeneration name the host image: a re-exec keeps the PID and raises the
	// generation.
	HostPID        int `json:"hostPID"`
	HostGeneration int `json:"hostGeneration"`
}

// QuotesServer is the service's server side.
type QuotesServer interface {
	Quote(ctx context.Context, req *QuoteRequest) (*QuoteReply, error)
}

// ServiceDesc describes the service to grpc.Server.RegisterService.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "quote.Quotes",
	HandlerType: (*QuotesServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Quote", Handler: quoteHandler}},
	Metadata:    "quoterpc (JSON codec, no .proto)",
}

func quoteHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(QuoteRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(QuotesServer).Quote(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: FullMethod}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return srv.(QuotesServer).Quote(ctx, req.(*QuoteRequest))
	})
}

// Quote calls the service on cc with the JSON codec.
func Quote(ctx context.Context, cc grpc.ClientConnInterface, req *QuoteRequest, opts ...grpc.CallOption) (*QuoteReply, error) {
	out := new(QuoteReply)
	opts = append([]grpc.CallOption{grpc.CallContentSubtype(CodecName)}, opts...)
	if err := cc.Invoke(ctx, FullMethod, req, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}
