// Command protogen regenerates the code of Vigie's API contract from its
// .proto files, offline: the Go messages, the gRPC services, the
// grpc-gateway handlers and the OpenAPI v2 description of api/vigie/v1.
// `make proto` runs it from the module's root.
//
// It compiles the .proto files with github.com/bufbuild/protocompile (no
// protoc, no schema registry: the google/api imports are the copies under
// api/third_party) and feeds the result to the protoc plugins pinned in
// go.mod as tools, through the plugin protocol
// (google.protobuf.compiler.CodeGeneratorRequest on standard input), each
// run as `go tool <plugin>`. The same versions therefore give the same
// bytes on every machine; a test checks that the committed files are
// exactly what this command writes.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/bufbuild/protocompile/protoutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// Paths relative to the module's root.
const (
	// protoRoot is the import root of Vigie's .proto files: they are
	// imported as "vigie/v1/...".
	protoRoot = "api"
	// protoDir is the directory of the contract, under protoRoot.
	protoDir = "vigie/v1"
	// thirdParty is the import root of the google/api copies.
	thirdParty = "api/third_party"
	// openapiModule is the Go module whose protoc-gen-openapiv2/options
	// .proto files the contract imports: its version is go.mod's.
	openapiModule = "github.com/grpc-ecosystem/grpc-gateway/v2"
)

// plugin is a protoc plugin run as a Go tool of the module.
type plugin struct {
	tool  string // the tool's package path, as in go.mod's tool block
	param string
}

// plugins are run in this order; each writes under protoRoot.
var plugins = []plugin{
	{"google.golang.org/protobuf/cmd/protoc-gen-go", "paths=source_relative"},
	{"google.golang.org/grpc/cmd/protoc-gen-go-grpc", "paths=source_relative"},
	// The package doc is doc.go's, not the plugin's "is a reverse proxy".
	{"github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway", "paths=source_relative,omit_package_doc=true"},
	// One OpenAPI file for the whole API, with the field names the JSON
	// gateway uses (the proto names).
	{"github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2",
		"allow_merge=true,merge_file_name=" + protoDir + "/vigie,json_names_for_fields=false"},
}

// generatedSuffixes are the names of the files the plugins write, so that
// stale ones can be found.
var generatedSuffixes = []string{".pb.go", "_grpc.pb.go", ".pb.gw.go", ".swagger.json"}

func main() {
	out := flag.String("out", protoRoot, "directory to write the generated files to (their paths are relative to it, e.g. vigie/v1/access.pb.go)")
	flag.Parse()
	root, err := moduleRoot()
	if err == nil {
		_, err = generate(context.Background(), root, *out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "protogen: %v\n", err)
		os.Exit(1)
	}
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// generate compiles the contract of the module at root and writes what the
// plugins produce under out (relative to root unless absolute). It
// returns the paths written, relative to out, and removes the generated
// files of out's contract directory that are no longer produced.
func generate(ctx context.Context, root, out string) ([]string, error) {
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	req, err := compile(ctx, root)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, p := range plugins {
		got, err := runPlugin(ctx, root, p, req)
		if err != nil {
			return nil, err
		}
		for name, content := range got {
			if _, dup := files[name]; dup {
				return nil, fmt.Errorf("%s: %s is written by two plugins", p.tool, name)
			}
			files[name] = content
		}
	}
	var written []string
	for name, content := range files {
		path := filepath.Join(out, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return nil, err
		}
		written = append(written, name)
	}
	slices.Sort(written)
	// Remove what an older contract generated and this one does not.
	old, err := generatedFiles(filepath.Join(out, filepath.FromSlash(protoDir)))
	if err != nil {
		return nil, err
	}
	for _, name := range old {
		rel := protoDir + "/" + name
		if _, ok := files[rel]; !ok {
			if err := os.Remove(filepath.Join(out, filepath.FromSlash(rel))); err != nil {
				return nil, err
			}
		}
	}
	return written, nil
}

// generatedFiles lists the generated files of a directory, by name.
func generatedFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		for _, s := range generatedSuffixes {
			if !e.IsDir() && strings.HasSuffix(e.Name(), s) {
				names = append(names, e.Name())
				break
			}
		}
	}
	return names, nil
}

// compile parses and links the contract's .proto files and returns the
// request every plugin receives (without its parameter).
func compile(ctx context.Context, root string) (*pluginpb.CodeGeneratorRequest, error) {
	entries, err := os.ReadDir(filepath.Join(root, protoRoot, protoDir))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".proto") {
			names = append(names, protoDir+"/"+e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no .proto file in %s", filepath.Join(protoRoot, protoDir))
	}
	slices.Sort(names)
	gateway, err := moduleDir(ctx, root, openapiModule)
	if err != nil {
		return nil, err
	}
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			ImportPaths: []string{filepath.Join(root, protoRoot), filepath.Join(root, thirdParty), gateway},
		}),
		// Comments become the generated code's doc comments and the
		// OpenAPI descriptions.
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	linked, err := c.Compile(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: names}
	seen := map[string]bool{}
	for _, f := range linked {
		addFile(req, f, seen)
	}
	return req, nil
}

// moduleDir returns the directory of a module of the build list, in the
// module cache.
func moduleDir(ctx context.Context, root, module string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(b))
	if dir == "" {
		return "", fmt.Errorf("module %s is not downloaded (go mod download %s)", module, module)
	}
	return dir, nil
}

// addFile appends f's dependencies, then f, to req.ProtoFile: plugins want
// the files in topological order.
func addFile(req *pluginpb.CodeGeneratorRequest, f protoreflect.FileDescriptor, seen map[string]bool) {
	if seen[f.Path()] {
		return
	}
	seen[f.Path()] = true
	imports := f.Imports()
	for i := range imports.Len() {
		addFile(req, imports.Get(i).FileDescriptor, seen)
	}
	var fdp *descriptorpb.FileDescriptorProto
	if r, ok := f.(linker.Result); ok {
		fdp = r.FileDescriptorProto()
	} else {
		fdp = protoutil.ProtoFromFileDescriptor(f)
	}
	req.ProtoFile = append(req.ProtoFile, fdp)
}

// runPlugin runs one plugin and returns the files it produced, by path.
func runPlugin(ctx context.Context, root string, p plugin, req *pluginpb.CodeGeneratorRequest) (map[string][]byte, error) {
	req = proto.CloneOf(req)
	req.Parameter = proto.String(p.param)
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "tool", p.tool)
	cmd.Dir = root
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go tool %s: %w\n%s", p.tool, err, stderr.Bytes())
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("%s: response: %w", p.tool, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("%s: %s", p.tool, resp.GetError())
	}
	files := map[string][]byte{}
	for _, f := range resp.File {
		if f.GetInsertionPoint() != "" {
			return nil, fmt.Errorf("%s: insertion points are not supported (%s)", p.tool, f.GetName())
		}
		name := f.GetName()
		if name == "" || filepath.IsAbs(name) || strings.Contains(name, "..") || !strings.HasPrefix(name, protoDir+"/") {
			return nil, fmt.Errorf("%s: unexpected output path %q", p.tool, name)
		}
		files[name] = []byte(f.GetContent())
	}
	return files, nil
}
