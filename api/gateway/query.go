package gateway

import (
	"net/http"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/vigie-sante/vigie/api/server"
)

// route is an HTTP route of the API, from a method's google.api.http
// annotation.
type route struct {
	verb     string
	segments []string // of the path; "{...}" matches one segment
	input    protoreflect.MessageDescriptor
	body     string // "*": the whole request is the body
}

// apiRoutes returns the routes of the services of package vigie.v1.
func apiRoutes() []route {
	var out []route
	protoregistry.GlobalFiles.RangeFilesByPackage("vigie.v1", func(f protoreflect.FileDescriptor) bool {
		for i := 0; i < f.Services().Len(); i++ {
			ms := f.Services().Get(i).Methods()
			for j := 0; j < ms.Len(); j++ {
				m := ms.Get(j)
				rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
				if rule == nil {
					continue
				}
				r := route{input: m.Input(), body: rule.GetBody()}
				switch p := rule.GetPattern().(type) {
				case *annotations.HttpRule_Get:
					r.verb, r.segments = http.MethodGet, strings.Split(p.Get, "/")
				case *annotations.HttpRule_Post:
					r.verb, r.segments = http.MethodPost, strings.Split(p.Post, "/")
				case *annotations.HttpRule_Put:
					r.verb, r.segments = http.MethodPut, strings.Split(p.Put, "/")
				case *annotations.HttpRule_Patch:
					r.verb, r.segments = http.MethodPatch, strings.Split(p.Patch, "/")
				case *annotations.HttpRule_Delete:
					r.verb, r.segments = http.MethodDelete, strings.Split(p.Delete, "/")
				default:
					continue
				}
				out = append(out, r)
			}
		}
		return true
	})
	return out
}

func (r *route) matches(verb, path string) bool {
	if verb != r.verb {
		return false
	}
	segs := strings.Split(path, "/")
	if len(segs) != len(r.segments) {
		return false
	}
	for i, s := range r.segments {
		if !strings.HasPrefix(s, "{") && s != segs[i] {
			return false
		}
	}
	return true
}

// strictQuery refuses, with INVALID_ARGUMENT, a call of an API route
// whose query names no field of the method's request, as docs/api.md
// says of unknown fields in a body: grpc-gateway ignores them (and every
// query parameter of a route whose body is the whole request, and of a
// request without fields), so that a misspelt page_size would silently
// give the default.
func strictQuery(next http.Handler, routes []route, m runtime.Marshaler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "" {
			next.ServeHTTP(w, r)
			return
		}
		i := slices.IndexFunc(routes, func(rt route) bool { return rt.matches(r.Method, r.URL.Path) })
		if i < 0 {
			next.ServeHTTP(w, r) // not a route: the mux answers
			return
		}
		keys := make([]string, 0)
		for k := range r.URL.Query() {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if routes[i].body == "*" || !knownParameter(routes[i].input, k) {
				// The code comes from the one mapping (server.Status).
				st, _ := server.Status(&server.FieldError{Field: "query parameter" + nameOf(k), Problem: "unknown parameter"})
				writeStatus(w, m, st)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// knownParameter reports whether key names a field of msg as
// grpc-gateway's query parser reads it: a dotted path of .proto or JSON
// field names through singular messages, and "field[key]" for a map.
func knownParameter(msg protoreflect.MessageDescriptor, key string) bool {
	isMap := false
	if i := strings.IndexByte(key, '['); i >= 0 {
		if !strings.HasSuffix(key, "]") {
			return false
		}
		key, isMap = key[:i], true
	}
	path := strings.Split(key, ".")
	for i, name := range path {
		fd := msg.Fields().ByTextName(name)
		if fd == nil {
			fd = msg.Fields().ByJSONName(name)
		}
		if fd == nil {
			return false
		}
		if i == len(path)-1 {
			return fd.IsMap() == isMap
		}
		if fd.Message() == nil || fd.Cardinality() == protoreflect.Repeated {
			return false
		}
		msg = fd.Message()
	}
	return false
}

// nameOf returns " "+k when k looks like a parameter's name (letters,
// '_' and '.', at most 64), "" otherwise: an unknown key is the client's
// text, and may hold an INS or health data.
func nameOf(k string) string {
	if k == "" || len(k) > 64 {
		return ""
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '.') {
			return ""
		}
	}
	return " " + k
}
