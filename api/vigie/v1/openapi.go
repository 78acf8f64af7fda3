package vigiev1

import _ "embed" // OpenAPI

// OpenAPI is vigie.swagger.json, the OpenAPI (Swagger 2.0) description of
// the JSON mapping of the API, as `make proto` generated it. The HTTP
// gateway serves it at /openapi.json.
//
//go:embed vigie.swagger.json
var OpenAPI []byte
