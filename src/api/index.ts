export { startApiServer, DEFAULT_BODY_LIMIT, type ApiServer, type ApiServerOptions, type ApiTlsOptions } from "./server.js";
export { authenticate, clientKey, DEFAULT_AUTH_RATE_LIMIT, FailedAuthLimiter, hashToken, loadTokenFile, parseTokenFile, tokenLine, type AuthRateLimitOptions, type Role, type TokenEntry } from "./auth.js";
export { createApiMetrics, type ApiMetrics, type RefusalReason } from "./metrics.js";
export { buildOpenApiDocument } from "./openapi.js";
export { ROUTES } from "./routes.js";
