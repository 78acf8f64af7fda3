package client

import (
	"context"
	"fmt"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// IssueEnrolmentCode makes a one-time enrolment code for a patient (POST
// /v1/enrolment-codes), for an administrator. The patient's INS goes in
// the body, never in the URL.
func (c *Client) IssueEnrolmentCode(ctx context.Context, req *vigiev1.IssueEnrolmentCodeRequest) (*vigiev1.EnrolmentCode, error) {
	out := &vigiev1.EnrolmentCode{}
	return out, c.postJSON(ctx, "/v1/enrolment-codes", req, out)
}

// RevokeEnrolments removes the links of a patient's sign-ins (POST
// /v1/enrolments:revoke), for an administrator.
func (c *Client) RevokeEnrolments(ctx context.Context, req *vigiev1.RevokeEnrolmentsRequest) (*vigiev1.RevokeEnrolmentsResponse, error) {
	out := &vigiev1.RevokeEnrolmentsResponse{}
	return out, c.postJSON(ctx, "/v1/enrolments:revoke", req, out)
}

// postJSON posts req to path with the client's token and reads the answer
// into out.
func (c *Client) postJSON(ctx context.Context, path string, req, out proto.Message) error {
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	b, err := c.do(ctx, http.MethodPost, private, path, nil, body)
	if err != nil {
		return err
	}
	return unmarshal("POST "+path, b, out)
}
