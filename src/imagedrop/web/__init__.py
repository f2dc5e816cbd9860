"""The HTTP API: request/response models (`models`), the OpenAPI document (`openapi`), handlers."""
