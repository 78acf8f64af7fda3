package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// InProcess returns a connection to the server for the JSON gateway that
// calls the interceptor chain and the handlers directly, in the caller's
// goroutine: no HTTP/2 framing and no serialisation of the request or the
// response. Every unary interceptor runs, in the order of the package
// doc, exactly as for a call over the network: the chain is one value
// (Server.unary), given to the gRPC server and used here.
//
// A call is seen by the server as one from [GatewayAddr]: its outgoing
// metadata (the bearer token, [ClientAddrMetadata]) become the incoming
// metadata, and nothing else does; it carries no TLS state, hence no
// client certificate. The request's and the response's fields are moved,
// not copied: the caller must not use the request after the call, and
// the reply shares memory with what the handler returned. Streams are
// not served (UNIMPLEMENTED): the API has none.
//
// The connection needs no closing; it is safe for concurrent use.
func (s *Server) InProcess() grpc.ClientConnInterface { return inProcess{s} }

// directMethod is a unary method as registered: its service's
// implementation and the generated handler that decodes the request and
// runs the interceptor chain around the implementation.
type directMethod struct {
	impl    any
	handler grpc.MethodHandler
}

// registrar registers services on the gRPC server and keeps their unary
// methods for InProcess.
type registrar struct{ s *Server }

func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	r.s.grpc.RegisterService(desc, impl)
	for _, m := range desc.Methods {
		r.s.methods["/"+desc.ServiceName+"/"+m.MethodName] = directMethod{impl: impl, handler: m.Handler}
	}
}

type inProcess struct{ s *Server }

var _ grpc.ClientConnInterface = inProcess{}

func (c inProcess) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, ok := c.s.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "in-process call: the request is not a protocol buffer")
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "in-process call: the reply is not a protocol buffer")
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	// What the gateway sends becomes what the server receives, as over
	// the network; and nothing goes further out of a handler's own calls.
	ctx = metadata.NewIncomingContext(ctx, md)
	ctx = metadata.NewOutgoingContext(ctx, nil)
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: GatewayAddr{}, LocalAddr: GatewayAddr{}})
	st := &directStream{method: method}
	ctx = grpc.NewContextWithServerTransportStream(ctx, st)
	resp, err := m.handler(m.impl, ctx, func(req any) error {
		dst, ok := req.(proto.Message)
		if !ok {
			return status.Error(codes.Internal, "in-process call: the handler's request is not a protocol buffer")
		}
		return moveMessage(dst, in)
	}, c.s.unary)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = st.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = st.trailer
		}
	}
	if err != nil {
		return err
	}
	r, ok := resp.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "in-process call: the response is not a protocol buffer")
	}
	return moveMessage(out, r)
}

func (inProcess) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "in-process calls: no streams")
}

// moveMessage sets dst's fields to src's, which must be the same message
// type and dst empty: message, list and map fields are shared, not copied
// (protoreflect's Set stores composite values as they are).
func moveMessage(dst, src proto.Message) error {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	if d.Descriptor() != s.Descriptor() {
		return status.Error(codes.Internal, fmt.Sprintf("in-process call: %s given for %s", s.Descriptor().FullName(), d.Descriptor().FullName()))
	}
	s.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	if u := s.GetUnknown(); len(u) > 0 {
		d.SetUnknown(u)
	}
	return nil
}

// directStream is the grpc.ServerTransportStream of an in-process call:
// grpc.Method works in handlers, and headers or trailers they set reach
// the gateway's call options.
type directStream struct {
	method          string
	header, trailer metadata.MD
}

func (s *directStream) Method() string { return s.method }

func (s *directStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *directStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *directStream) SetTrailer(md metadata.MD) error {
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}
