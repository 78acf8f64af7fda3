package gateway

import (
	"context"
	"net/http"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/server"
)

// The messages grpc-gateway writes for a query or path parameter it
// cannot read. They quote the value ("parsing field \"page_size\":
// strconv.ParseInt: parsing \"…\": value out of range"), and the value
// may be an INS or a document's name.
var (
	queryFieldError = regexp.MustCompile(`^(?:parsing field|parsing list|parsing map key|parsing map value|too many values for field|duplicate field|field already set for oneof|field) "([a-z0-9_.]{1,64})"`)
	pathParamError  = regexp.MustCompile(`^type mismatch, parameter: ([a-z0-9_.]{1,64}), error: `)
)

// paramErrors is the gateway's error handler: an error about a query or
// path parameter names the parameter and the problem, never the value;
// every other INVALID_ARGUMENT message goes out without what it quotes
// nor any INS (server.ErrorText), as a backstop. The details (the
// server's ErrorInfo) stay.
func paramErrors(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		p := st.Proto()
		p.Message = paramMessage(st.Message())
		err = status.ErrorProto(p)
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// paramMessage rewrites an INVALID_ARGUMENT message (see paramErrors).
func paramMessage(msg string) string {
	if m := queryFieldError.FindStringSubmatch(msg); m != nil {
		return "invalid " + m[1] + ": " + paramProblem(msg)
	}
	if m := pathParamError.FindStringSubmatch(msg); m != nil {
		return "invalid " + m[1] + ": " + paramProblem(msg)
	}
	switch {
	case strings.HasPrefix(msg, "invalid URL escape"):
		return "invalid query: malformed percent-encoding"
	case strings.HasPrefix(msg, "invalid semicolon separator"):
		return "invalid query: ; is not a separator"
	}
	return server.ErrorText(msg)
}

// paramProblem says what is wrong with a parameter, from grpc-gateway's
// message, in words that do not depend on the value.
func paramProblem(msg string) string {
	switch {
	case strings.Contains(msg, "value out of range"):
		return "out of range"
	case strings.Contains(msg, "ParseBool"):
		return "not true or false"
	case strings.Contains(msg, "ParseInt"), strings.Contains(msg, "ParseUint"):
		return "not an integer"
	case strings.Contains(msg, "ParseFloat"):
		return "not a number"
	case strings.Contains(msg, "too many values"), strings.HasPrefix(msg, "duplicate field"), strings.HasPrefix(msg, "field already set"):
		return "given more than once"
	case strings.Contains(msg, "is not a valid value"):
		return "unknown value"
	}
	return "not a valid value"
}
