package client

import (
	"context"
	"fmt"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// LookupNames returns the public directories' entries of the RPPS and
// FINESS numbers given (POST /v1/directory:lookup, public): at most 500 of
// each; a number the directories lack is absent from the answer.
func (c *Client) LookupNames(ctx context.Context, rpps, finess []string) (*vigiev1.LookupNamesResponse, error) {
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&vigiev1.LookupNamesRequest{Rpps: rpps, Finess: finess})
	if err != nil {
		return nil, fmt.Errorf("lookup names: %w", err)
	}
	b, err := c.do(ctx, http.MethodPost, public, "/v1/directory:lookup", nil, body)
	if err != nil {
		return nil, err
	}
	out := &vigiev1.LookupNamesResponse{}
	return out, unmarshal("POST /v1/directory:lookup", b, out)
}
