package main

import (
	"bytes"
	"context"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/google/go-cmp/cmp"
)

// TestGeneratedUpToDate regenerates the contract's code into a temporary
// directory and compares it with the committed files: a .proto change
// without `make proto`, a hand edit of generated code, or a stale
// generated file fails here.
func TestGeneratedUpToDate(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	written, err := generate(context.Background(), root, out)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if len(written) == 0 {
		t.Fatal("generate wrote nothing")
	}
	for _, name := range written {
		want, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, protoRoot, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s/%s is not committed: run make proto", protoRoot, name)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s/%s differs from what make proto writes: run make proto", protoRoot, name)
		}
	}
	committed, err := generatedFiles(filepath.Join(root, protoRoot, protoDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range committed {
		if !slices.Contains(written, protoDir+"/"+name) {
			t.Errorf("%s/%s/%s is not generated any more: run make proto", protoRoot, protoDir, name)
		}
	}
}

// TestThirdPartyMatchesGenproto checks that the copies of google/api under
// api/third_party describe the same messages, fields and options as the
// descriptors compiled into the Go packages the generated code links
// (google.golang.org/genproto/googleapis/api, pinned in go.mod): the HTTP
// rules the gateway was generated from are the ones the runtime knows.
func TestThirdPartyMatchesGenproto(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]protoreflect.FileDescriptor{
		"google/api/annotations.proto": annotations.File_google_api_annotations_proto,
		"google/api/http.proto":        annotations.File_google_api_http_proto,
		"google/api/httpbody.proto":    httpbody.File_google_api_httpbody_proto,
	}
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
		ImportPaths: []string{filepath.Join(root, thirdParty)},
	})}
	for name, want := range linked {
		files, err := c.Compile(context.Background(), name)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		got := protodesc.ToFileDescriptorProto(files[0])
		wantProto := protodesc.ToFileDescriptorProto(want)
		// Language options (java_package, cc_enable_arenas...) differ
		// between releases and do not reach Go code; go_package must not.
		for _, fd := range []*descriptorpb.FileDescriptorProto{got, wantProto} {
			fd.Options = &descriptorpb.FileOptions{GoPackage: fd.GetOptions().GoPackage}
		}
		if diff := cmp.Diff(wantProto, got, protocmp.Transform()); diff != "" {
			t.Errorf("api/third_party/%s differs from the linked descriptor (-linked +copy):\n%s", name, diff)
		}
	}
}

// TestOnePackageDoc checks that the contract's Go package has one doc
// comment, doc.go's: a plugin that writes its own ("Package vigiev1 is a
// reverse proxy") would replace it in go doc.
func TestOnePackageDoc(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, protoRoot, filepath.FromSlash(protoDir))
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var withDoc []string
	fset := token.NewFileSet()
	for _, name := range names {
		f, err := parser.ParseFile(fset, name, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			withDoc = append(withDoc, filepath.Base(name))
		}
	}
	if want := []string{"doc.go"}; !slices.Equal(withDoc, want) {
		t.Errorf("files of %s with a package doc = %q, want %q", dir, withDoc, want)
	}
}
