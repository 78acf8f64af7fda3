// Package vigiev1 holds the Go code of Vigie's API contract, version 1
// (protobuf package vigie.v1): the messages, the gRPC clients and servers
// of its services (AccessService, ConsentService, HistoryService,
// AdminService, LogService, AuditService) and the grpc-gateway handlers
// that serve the same methods as JSON over HTTP.
//
// The .proto files beside this file are the contract and document every
// field; everything else here but this file is generated from them by
// `make proto` (api/internal/protogen) and must not be edited by hand.
// vigie.swagger.json is the contract's OpenAPI (Swagger 2.0) description.
// docs/api.md says how the pieces fit: routes, identity, the authorization
// matrix, errors, retries and paging.
package vigiev1
